"""The musicgpt-server backend against a stand-in speaking MusicGPT's server protocol.

Each test starts real stand-in servers (tests/fake_musicgpt_server.py, subprocesses on
127.0.0.1) and drives the real generator; what it checks comes from the stand-in's
record of the messages it received, the files it wrote and the clips fetched.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import soundfile as sf
import websockets.asyncio.client as ws_client

from infiniloopd.config import ConfigError, GeneratorConfig, parse_config
from infiniloopd.generators import GeneratorError, make_generator
from infiniloopd.generators.musicgpt_server import MusicGPTServerGenerator, files_url
from tests import fake_musicgpt_server as fake
from tests.daemon_proc import Daemon, base_config, rms
from tests.faults.conftest import assert_no_gap, events


@pytest.fixture
def servers(tmp_path):
    """start(*flags) -> a running stand-in; all are stopped at the end."""
    started: list[fake.Proc] = []

    def start(*flags: str) -> fake.Proc:
        proc = fake.start(tmp_path / f"server{len(started)}", *flags)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def make(urls: list[str], **kw) -> MusicGPTServerGenerator:
    kw.setdefault("timeout", 30.0)
    g = make_generator(GeneratorConfig(backend="musicgpt-server", servers=urls, **kw))
    assert isinstance(g, MusicGPTServerGenerator)
    return g


def requests(proc: fake.Proc, kind: str = "GenerateAudio") -> list[dict]:
    msgs = [json.loads(m) for m in proc.received()]
    return [m[kind] for m in msgs if kind in m]


async def one(g, out: Path, prompt: str = "lofi beat", seconds: float = 5.0, progress=None):
    return await g.generate(prompt, seconds, out, progress or (lambda f: None), seed=1)


def run(coro):
    return asyncio.run(coro)


# --- the protocol ------------------------------------------------------------------------


def test_clip_progress_and_the_request_as_sent(servers, tmp_path):
    s = servers("--steps", "4")
    g = make([s.url])
    seen: list[float] = []
    out = run(one(g, tmp_path / "clip.wav", seconds=5.4, progress=seen.append))
    (req,) = requests(s)
    # secs is an integer in the JSON text itself (the server refuses 5.0).
    assert '"secs": 5}' in s.received()[0]
    assert req["prompt"] == "lofi beat"
    assert req["chat_id"] == g.chat_id
    # The clip is the one the server wrote for this request, fetched over /files/.
    assert out.read_bytes() == (s.root / "audios" / f"{req['id']}.wav").read_bytes()
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (32000, 1, "FLOAT")
    assert info.duration == pytest.approx(5.0)
    # The server's four Progress messages, in order, between the start and the end.
    steps = [p for p in seen if 0 < p < 1]
    assert steps == [0.25, 0.5, 0.75]
    assert seen[0] == 0.0 and seen[-1] == 1.0
    st = g.servers[0]
    assert (st["model"], st["device"], st["sent"], st["ok"], st["failures"]) == (
        "MusicGen Small",
        "Cpu",
        1,
        1,
        0,
    )
    assert st["mean_seconds"] > 0 and st["realtime_factor"] == pytest.approx(
        st["mean_seconds"] / 5.0, rel=0.01
    )
    assert g.model == "MusicGen Small"


def test_greeting_model_and_device_are_reported(servers, tmp_path):
    s = servers("--model", "MusicGen Medium", "--device", "Cuda")
    g = make([s.url])
    run(one(g, tmp_path / "clip.wav"))
    st = g.servers[0]
    assert (st["model"], st["device"]) == ("MusicGen Medium", "Cuda")
    assert g.model == "MusicGen Medium"


def test_older_release_init_greeting_and_unwrapped_messages(servers, tmp_path):
    s = servers("--old-protocol", "--model", "MusicGen Small", "--device", "Cpu")
    g = make([s.url])
    seen: list[float] = []
    out = run(one(g, tmp_path / "clip.wav", progress=seen.append))
    (req,) = requests(s)
    assert out.read_bytes() == (s.root / "audios" / f"{req['id']}.wav").read_bytes()
    assert [p for p in seen if 0 < p < 1] == [0.25, 0.5, 0.75]
    assert g.servers[0]["model"] == "MusicGen Small"


def test_generation_error_is_one_line_naming_the_server(servers, tmp_path):
    s = servers("--error", "Ort error: out of memory")
    g = make([s.url])
    with pytest.raises(GeneratorError) as info:
        run(one(g, tmp_path / "clip.wav"))
    msg = str(info.value)
    assert "\n" not in msg
    assert s.url in msg and "out of memory" in msg
    assert g.servers[0]["failures"] == 1
    assert not (tmp_path / "clip.wav").exists()


def test_missing_file_and_silent_clip_are_failures(servers, tmp_path):
    a = servers("--missing-file")
    b = servers("--silent")
    g = make([a.url, b.url])
    with pytest.raises(GeneratorError) as info:
        run(one(g, tmp_path / "clip.wav"))
    msg = str(info.value)
    assert "HTTP 404" in msg and "silent" in msg
    assert [st["failures"] for st in g.servers] == [1, 1]


def test_prompt_change_aborts_the_request_in_flight(servers, tmp_path):
    s = servers("--gen-seconds", "30", "--steps", "300")
    g = make([s.url])

    async def scenario() -> None:
        task = asyncio.create_task(one(g, tmp_path / "clip.wav"))
        while not requests(s):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        task.cancel()  # what the producer does on a prompt change
        with pytest.raises(asyncio.CancelledError):
            await task
        # The abort is sent in the background; give it a moment to leave.
        for _ in range(100):
            if requests(s, "AbortGeneration"):
                break
            await asyncio.sleep(0.05)

    run(scenario())
    (req,) = requests(s)
    (abort,) = requests(s, "AbortGeneration")
    assert abort == {"id": req["id"], "chat_id": req["chat_id"]}
    # The cancel returned before the 30 s clip was made: nothing waited for it.
    assert not (s.root / "audios" / f"{req['id']}.wav").exists()


def test_disconnect_mid_generation_goes_to_the_next_server(servers, tmp_path):
    bad = servers("--disconnect-after", "2", "--gen-seconds", "1")
    good = servers()
    g = make([bad.url, good.url])
    out = run(one(g, tmp_path / "clip.wav"))
    assert len(requests(bad)) == 1
    (req,) = requests(good)
    assert out.read_bytes() == (good.root / "audios" / f"{req['id']}.wav").read_bytes()
    b, ok = g.servers
    assert b["failures"] == 1 and "disconnected" in b["last_error"]
    assert b["retry_in"] is not None  # rests before it is chosen again
    assert (ok["ok"], ok["failures"]) == (1, 0)


def test_hang_times_out_and_aborts(servers, tmp_path):
    s = servers("--hang")
    g = make([s.url], timeout=2.0)
    with pytest.raises(GeneratorError) as info:
        run(one(g, tmp_path / "clip.wav"))
    assert "generator.timeout" in str(info.value)
    (req,) = requests(s)
    assert requests(s, "AbortGeneration") == [{"id": req["id"], "chat_id": req["chat_id"]}]


def test_a_silent_server_is_given_up_and_the_next_one_used(servers, tmp_path):
    hung = servers("--hang")
    good = servers()
    g = make([hung.url, good.url], timeout=60.0)
    g.silence_limit = 1.5

    async def scenario() -> tuple[Path, list[dict]]:
        out = await one(g, tmp_path / "clip.wav")
        return out, g.servers  # while the loop runs: connections as they are

    out, status = run(scenario())
    assert len(requests(hung)) == 1 and len(requests(good)) == 1
    assert out.exists()
    assert "silent" in status[0]["last_error"]
    # The silent server's connection is dropped (a new one next time); the good one stays.
    assert [st["connected"] for st in status] == [False, True]
    # It was told to drop the request, in case it only stopped talking.
    assert len(requests(hung, "AbortGeneration")) == 1


def test_a_request_the_server_drops_on_an_abort_is_not_awaited_forever(servers, tmp_path):
    # The real queue, when its running job is aborted, also drops the job behind it
    # and never answers for it: the generator must notice the silence and give up.
    s = servers("--gen-seconds", "20", "--steps", "200")
    g = make([s.url], timeout=60.0)
    g.silence_limit = 1.5

    async def scenario() -> str:
        first = asyncio.create_task(one(g, tmp_path / "a.wav", prompt="first"))
        while not requests(s):
            await asyncio.sleep(0.05)
        second = asyncio.create_task(one(g, tmp_path / "b.wav", prompt="second"))
        while len(requests(s)) < 2:
            await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(GeneratorError) as info:
            await second
        return str(info.value)

    msg = run(scenario())
    sent = requests(s)
    assert [r["prompt"] for r in sent] == ["first", "second"]
    # The first aborted by the cancel; the second too when given up (in case it waits).
    assert [a["id"] for a in requests(s, "AbortGeneration")] == [r["id"] for r in sent]
    assert "silent" in msg and s.url in msg


def test_a_server_that_is_not_musicgpt_or_never_greets(tmp_path):
    from websockets.asyncio.server import serve

    async def other(ws) -> None:  # some other WebSocket service
        await ws.send(json.dumps({"Hello": {"version": 1}}))
        await ws.wait_closed()

    async def mute(ws) -> None:  # accepts, then says nothing
        await ws.wait_closed()

    async def scenario() -> list[str]:
        errors = []
        for handler in (other, mute):
            async with serve(handler, "127.0.0.1", 0) as server:
                port = server.sockets[0].getsockname()[1]
                g = make([f"ws://127.0.0.1:{port}/ws"])
                g.connect_timeout = 1.0
                with pytest.raises(GeneratorError) as info:
                    await one(g, tmp_path / "clip.wav")
                errors.append(str(info.value))
        return errors

    other_error, mute_error = run(scenario())
    assert "not a MusicGPT server (greeting 'Hello')" in other_error
    assert "no answer within 1 s of connecting" in mute_error


def test_server_not_there(tmp_path):
    url = f"ws://127.0.0.1:{fake.free_port()}/ws"
    g = make([url])
    with pytest.raises(GeneratorError) as info:
        run(one(g, tmp_path / "clip.wav"))
    msg = str(info.value)
    assert url in msg and "cannot connect" in msg
    assert g.servers[0]["failures"] == 1 and g.servers[0]["connected"] is False


def test_refusing_server(servers, tmp_path):
    s = servers("--refuse")
    g = make([s.url])
    with pytest.raises(GeneratorError) as info:
        run(one(g, tmp_path / "clip.wav"))
    assert "503" in str(info.value)


def test_two_servers_one_failing_jobs_go_to_the_good_one(servers, tmp_path):
    dead = f"ws://127.0.0.1:{fake.free_port()}/ws"
    failing = servers("--error", "boom")
    good = servers()
    g = make([dead, failing.url, good.url])

    async def three() -> None:
        for i in range(3):
            await one(g, tmp_path / f"clip{i}.wav", prompt=f"song {i}")

    run(three())
    # The failing server got one job and then rested; every clip came from the good one.
    assert len(requests(failing)) == 1
    assert [r["prompt"] for r in requests(good)] == ["song 0", "song 1", "song 2"]
    d, f, ok = g.servers
    assert d["failures"] == 1 and f["failures"] == 1 and ok["ok"] == 3


def test_least_busy_server_gets_the_next_clip(servers, tmp_path):
    a = servers("--gen-seconds", "1.5")
    b = servers("--gen-seconds", "1.5")
    g = make([a.url, b.url])

    async def both() -> None:
        await asyncio.gather(
            one(g, tmp_path / "a.wav", prompt="first"), one(g, tmp_path / "b.wav", prompt="second")
        )

    run(both())
    # Two clips at once: one on each server, not two queued on the first.
    assert len(requests(a)) == 1 and len(requests(b)) == 1


def test_messages_for_other_clients_are_ignored(servers, tmp_path):
    s = servers("--gen-seconds", "1.0", "--steps", "4")
    g = make([s.url])
    seen: list[float] = []

    async def scenario() -> Path:
        # Another client's job runs first; all its messages reach our connection too.
        async with ws_client.connect(s.url, proxy=None) as other:
            other_id = "11111111-1111-4111-8111-111111111111"
            chat = "22222222-2222-4222-8222-222222222222"
            msg = {"GenerateAudio": {"id": other_id, "chat_id": chat, "prompt": "x", "secs": 5}}
            await other.send(json.dumps(msg))
            await asyncio.sleep(0.2)
            return await one(g, tmp_path / "clip.wav", progress=seen.append)

    out = run(scenario())
    ours = [r for r in requests(s) if r["chat_id"] == g.chat_id]
    assert len(ours) == 1
    assert out.read_bytes() == (s.root / "audios" / f"{ours[0]['id']}.wav").read_bytes()
    # Only our own four steps, not the other job's.
    assert [p for p in seen if 0 < p < 1] == [0.25, 0.5, 0.75]


def test_a_refusal_without_an_id_fails_the_waiting_request(servers, tmp_path):
    # What the server answers to a message it cannot parse: an Error with no request id.
    s = servers()

    async def scenario() -> str:
        async with ws_client.connect(s.url, proxy=None) as ws:
            await ws.recv()
            await ws.recv()
            msg = {
                "GenerateAudio": {
                    "id": "11111111-1111-4111-8111-111111111111",
                    "chat_id": "22222222-2222-4222-8222-222222222222",
                    "prompt": "x",
                    "secs": 8.0,
                }
            }
            await ws.send(json.dumps(msg))
            return await asyncio.wait_for(ws.recv(), 5)

    reply = json.loads(run(scenario()))
    # The stand-in refuses a float like the real server; the generator never sends one.
    assert "floating point" in reply["Error"]


# --- the config --------------------------------------------------------------------------


def test_config_servers_key():
    cfg = parse_config(
        {"generator": {"backend": "musicgpt-server", "servers": ["ws://gpu:8642/ws", "wss://x/ws"]}}
    )
    assert cfg.generator.servers == ["ws://gpu:8642/ws", "wss://x/ws"]
    with pytest.raises(ConfigError, match="generator.servers: expected a list of MusicGPT"):
        parse_config({"generator": {"backend": "musicgpt-server"}})
    for bad in (
        ["http://gpu:8642/ws"],
        "ws://gpu/ws",
        [],
        ["ws://gpu:99999/ws"],
        ["ws:///ws"],
        ["ws://gpu/ws\x07"],
        ["ws://a/ws", "ws://a/ws"],
    ):
        with pytest.raises(ConfigError, match="generator.servers: expected a list of distinct"):
            parse_config({"generator": {"servers": bad}})


def test_files_url():
    assert files_url("ws://h:8642/ws", "audios/x.wav") == "http://h:8642/files/audios/x.wav"
    assert files_url("wss://h/mg/ws", "audios/x.wav") == "https://h/mg/files/audios/x.wav"
    with pytest.raises(Exception, match="not a plain relative path"):
        files_url("ws://h/ws", "../etc/passwd")


# --- the daemon ----------------------------------------------------------------------------


@pytest.mark.slow
def test_daemon_plays_clips_from_the_server_and_status_lists_servers(servers, tmp_path):
    s = servers("--model", "MusicGen Small", "--device", "Cuda", "--gen-seconds", "0.5")
    dead = f"ws://127.0.0.1:{fake.free_port()}/ws"
    (tmp_path / "d").mkdir()
    cfg = base_config(tmp_path / "d" / "out.wav")
    cfg["generator"] = {
        "backend": "musicgpt-server",
        "servers": [dead, s.url],
        "seconds": 6,
        "prefetch": 1,
        "timeout": 30,
    }
    d = Daemon(tmp_path / "d", cfg)
    try:
        d.start()  # an empty library: the first loop must come from the stand-in
        st = d.wait_status(lambda st: st["stats"], 30, "a generated clip in the stats")
        assert list(st["stats"]) == ["musicgpt-server/MusicGen Small"]
        by_url = {srv["url"]: srv for srv in st["generator"]["servers"]}
        assert by_url[s.url]["ok"] >= 1 and by_url[s.url]["device"] == "Cuda"
        assert by_url[dead]["failures"] >= 1 and by_url[dead]["ok"] == 0
        verbose = d.ok("status", "-v")
        assert "generator:  musicgpt-server (model MusicGen Small, 6 s clips)" in verbose
        lines = [line for line in verbose.splitlines() if line.startswith("server:")]
        assert len(lines) == 2
        assert f"{s.url}  MusicGen Small on Cuda  connected" in verbose
        assert f"{dead}  not seen yet" in verbose and "cannot connect" in verbose
        # Every request the daemon sent carried an integer secs.
        assert [r["secs"] for r in requests(s)] == [6] * len(requests(s))
        # What played is the stand-in's music: sound, not silence.
        time.sleep(1.0)
        assert rms(d.samples()[-48000:]) > 0.01
    finally:
        d.close()


@pytest.mark.slow
def test_daemon_plays_on_while_the_server_is_gone_and_uses_it_again(servers, tmp_path):
    s = servers("--gen-seconds", "0.5")
    (tmp_path / "d").mkdir()
    cfg = base_config(tmp_path / "d" / "out.wav")
    cfg["generator"] = {
        "backend": "musicgpt-server",
        "servers": [s.url],
        "seconds": 6,
        "prefetch": 1,
        "timeout": 30,
    }
    cfg["playback"]["min_play"] = 60  # hold the first loop through the outage
    d = Daemon(tmp_path / "d", cfg)
    try:
        d.start()
        s.stop()  # the GPU machine goes away; the daemon's connection drops
        frame0 = d.frames()
        d.ok("prompt", "after the server went away")
        st = d.wait_status(lambda st: st["consecutive_failures"] >= 2, 30, "two failed generations")
        assert s.url in st["last_error"]
        (srv,) = st["generator"]["servers"]
        assert srv["connected"] is False and srv["failures"] >= 2
        # The loop played on through every failure, without a gap (failures can come fast:
        # listen for two more seconds of the outage).
        time.sleep(2.0)
        assert_no_gap(d.samples()[frame0:], "while the server was gone")
        # The server comes back on the same port: the next clip is made there again.
        again = fake.start(tmp_path / "again", "--port", str(s.port))
        try:
            mark = d.status()["last_seq"]
            d.ok("prompt", "the server is back")
            deadline = time.monotonic() + 60
            while not events(d, mark, "loop_ready"):
                assert time.monotonic() < deadline, d.log()[-3000:]
                time.sleep(0.2)
            # (a retry of the previous prompt may have reached it just before)
            assert requests(again)[-1]["prompt"] == "the server is back"
        finally:
            again.stop()
    finally:
        d.close()
