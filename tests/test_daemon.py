"""The real daemon as a subprocess (synth generator, real-time WAV file output), driven
only through infiniloopctl; what it played is checked in the WAV it wrote."""

from __future__ import annotations

import json
import random
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import zmq

from tests.daemon_proc import Daemon, base_config, rms, window_rms

RATE = 48000
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("daemon"), notify=True)
    try:
        yield d.start()
    finally:
        d.stop()
        d.close()


def hold_loop(d: Daemon) -> None:
    """Keep the current loop playing (no automatic switch) for level measurements."""
    d.ok("min-play", "3600")


def segment(d: Daemon, seconds: float) -> np.ndarray:
    """What the daemon writes during the next `seconds` (the file is paced in real time)."""
    start = d.frames()
    time.sleep(seconds)
    return d.samples()[start:]


def test_notify_ready_status_and_watchdog(daemon):
    n = daemon.notify
    assert n is not None
    n.wait_for("READY=1")
    assert n.wait_for("STATUS=").startswith("STATUS=")
    assert n.wait_for(f"MAINPID={daemon.proc.pid}")
    # WATCHDOG_USEC=1 s: pets arrive every half second while audio runs.
    count = len([x for x in n.lines() if x == "WATCHDOG=1"])
    time.sleep(1.5)
    assert len([x for x in n.lines() if x == "WATCHDOG=1"]) >= count + 2


def test_socket_dir_and_files_are_private(daemon):
    mode = stat.S_IMODE(daemon.runtime.stat().st_mode)
    assert mode == 0o700
    for name in ("control.sock", "events.sock"):
        st = (daemon.runtime / name).stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0


def test_plays_sound(daemon):
    x = segment(daemon, 1.0)
    assert len(x) > 0.7 * RATE
    assert rms(x) > 0.01


def test_pause_is_silence_and_play_resumes(daemon):
    daemon.ok("play")
    out = daemon.ok("pause")
    assert out.startswith("paused")
    time.sleep(0.3)  # the ramp and the output's lead
    quiet = segment(daemon, 1.0)
    assert len(quiet) > 0.7 * RATE  # paced silence keeps being written
    assert np.max(np.abs(quiet)) < 1e-3
    assert daemon.status()["state"] == "paused"
    assert daemon.ok("toggle").startswith("playing")
    time.sleep(0.3)
    assert rms(segment(daemon, 1.0)) > 0.01


def test_sleep_timer_fades_out_then_pauses(daemon):
    hold_loop(daemon)
    daemon.ok("play")
    volume = daemon.status()["volume"]
    time.sleep(0.5)
    start = daemon.frames()
    assert daemon.ok("sleep", "4s").startswith("sleep: pausing in 0:0")
    assert 0 < daemon.status()["sleep"]["remaining"] <= 4
    st = daemon.wait_status(lambda s: s["state"] == "paused", 15, "the sleep timer's pause")
    assert st["sleep"] is None and st["volume"] == volume
    time.sleep(0.5)
    x = daemon.samples()[start:]
    sec = [rms(x[i * RATE : (i + 1) * RATE]) for i in range(4)]
    # A 4 s timer fades over all of it: the level falls second by second (gain about
    # 0.87, 0.62, 0.37, 0.12), then the pause holds silence.
    assert sec[0] > 0.01 and sec[0] > 2.5 * sec[3], sec
    assert sec[0] > sec[2], sec
    assert np.max(np.abs(daemon.samples()[-RATE // 4 :])) < 1e-3
    daemon.ok("play")  # the volume is the same as before the timer
    time.sleep(0.3)
    assert rms(segment(daemon, 0.8)) > 0.5 * sec[0]


def test_stop_then_play(daemon):
    assert daemon.ok("stop").startswith("stopped")
    time.sleep(0.3)
    assert np.max(np.abs(segment(daemon, 0.6))) < 1e-3
    assert daemon.ok("play").startswith("playing")
    time.sleep(0.3)
    assert rms(segment(daemon, 0.8)) > 0.01


def test_volume_sets_the_level(daemon):
    hold_loop(daemon)
    try:
        daemon.ok("next")
        loop_s = daemon.status()["loop"]["seconds"]
        assert daemon.json("volume", "80")["volume"] == 80
        time.sleep(1.2)  # past the crossfade into the held loop
        loud = rms(segment(daemon, loop_s))  # one whole loop: same audio at each level
        assert daemon.json("volume", "-40")["volume"] == 40
        time.sleep(0.3)
        quiet = rms(segment(daemon, loop_s))
        assert 0.4 < quiet / loud < 0.6, (loud, quiet)
        assert daemon.json("volume", "+100")["volume"] == 100
        assert daemon.json("volume")["volume"] == 100
    finally:
        daemon.ok("volume", "80")
        daemon.ok("min-play", "3")


def test_next_crossfades_without_a_gap(daemon):
    hold_loop(daemon)
    try:
        # A fresh loop in the queue: library loops may all have played already.
        daemon.wait_status(lambda s: s["queue"] >= 1, 30, "a ready loop")
        before = daemon.status()["loop"]["id"]
        start = daemon.frames()
        after = daemon.json("next")["status"]["loop"]["id"]
        assert after != before
        time.sleep(2.0)
        x = daemon.samples()[start:]
        env = window_rms(x, RATE, 50)
        assert len(env) >= 30
        # Equal-power crossfade of 1 s: the level never drops out during the switch.
        assert env.min() > 0.1 * np.median(env), env.round(3)
        assert daemon.json("history")["entries"][0]["id"] == after
    finally:
        daemon.ok("min-play", "3")


def test_settings_commands(daemon):
    assert daemon.json("crossfade", "2")["crossfade"] == 2.0
    assert daemon.json("crossfade")["crossfade"] == 2.0
    assert daemon.json("min-play", "4")["min_play"] == 4.0
    assert daemon.json("duration", "7")["seconds"] == 7.0
    assert daemon.json("model", "medium")["model"] == "medium"
    assert daemon.json("generator", "synth")["backend"] == "synth"
    st = daemon.status()
    assert (st["crossfade"], st["min_play"]) == (2.0, 4.0)
    gen = st["generator"]
    assert (gen["backend"], gen["model"], gen["seconds"]) == ("synth", "medium", 7.0)
    # What the synth really plays with is its SoundFont, not the MusicGPT model.
    assert gen["uses"] in (None, "FluidR3_GM", "TimGM6mb", "numpy"), gen
    daemon.ok("crossfade", "1")
    daemon.ok("min-play", "3")
    daemon.ok("duration", "6")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["volume", "150"], 1, "between 0 and 100"),
        (["volume", "loud"], 2, "expected N, +N or -N"),
        (["crossfade", "61"], 1, "between 0 and 60"),
        (["crossfade", "soon"], 2, "expected seconds"),
        (["duration", "2"], 1, "generator.seconds"),
        (["model", "huge"], 1, "generator.model"),
        (["generator", "command"], 1, "generator.command"),
        (["preset", "nope"], 1, "no preset 'nope'"),
        (["save", "../../etc/x.wav"], 1, "must be inside the music dir"),
        (["save", "x.mp3"], 1, "expected a .wav or .flac"),
        (["bogus"], 2, "invalid choice"),
        (["prompt", "--nope"], 2, "unrecognized arguments"),
    ],
)
def test_errors_and_exit_codes(daemon, args, code, message):
    r = daemon.ctl(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr
    assert r.stdout == ""


def test_prompt_and_preset(daemon):
    r = daemon.json("preset", "jazz")
    assert r["preset"] == "jazz"
    st = daemon.status()
    assert st["prompt"] == r["prompt"] and st["preset"] == "jazz"
    # The first loop of the new prompt takes over as soon as it is ready.
    daemon.wait_status(lambda s: s["loop"]["prompt"] == r["prompt"], 30, "a jazz loop")
    out = daemon.json("prompt", "slow", "rainy", "piano", "--keep")
    assert out["prompt"] == "slow rainy piano"
    assert daemon.json("prompt")["prompt"] == "slow rainy piano"
    assert daemon.status()["preset"] is None
    daemon.wait_status(lambda s: s["loop"]["prompt"] == "slow rainy piano", 30, "a new loop")
    presets = daemon.json("presets")
    assert {"morning", "night", "synthwave"} <= {p["name"] for p in presets["presets"]}


def test_save_current_loop(daemon):
    st = daemon.status()
    out = daemon.json("save", "mine/loop.flac")
    path = daemon.music / "mine" / "loop.flac"
    assert out["path"] == str(path)
    audio, rate = sf.read(path, dtype="float32")
    assert rate == RATE and audio.shape[1] == 2
    assert abs(len(audio) / RATE - out_seconds(daemon, out["id"], st)) < 0.05
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["id"] == out["id"] and side["prompt"] and "bpm" in side
    assert side["end"] > side["start"] >= 0
    again = daemon.ctl("save", "mine/loop.flac")
    assert again.returncode == 1 and "exists" in again.stderr
    assert daemon.ctl("save", "mine/loop.flac", "--force").returncode == 0
    wav = daemon.json("save", str(daemon.music / "x.wav"))
    assert sf.info(wav["path"]).format == "WAV"
    assert len(daemon.json("save")["path"]) > 0  # a default name
    assert not list(daemon.music.rglob("*.tmp"))


def out_seconds(d: Daemon, loop_id: str, st: dict) -> float:
    for e in d.json("library", "--limit", "1000")["entries"]:
        if e["id"] == loop_id:
            return e["seconds"]
    return st["loop"]["seconds"]


def test_queue_history_library(daemon):
    q = daemon.json("queue")
    assert isinstance(q["entries"], list)
    # Make sure a second loop has played, whatever ran before this test.
    daemon.wait_status(lambda s: s["queue"] >= 1 or s["library"]["loops"] >= 2, 30, "a loop")
    daemon.ctl("next")
    h = daemon.json("history")["entries"]
    assert len(h) >= 2 and all(e["id"] and e["started"] for e in h)
    lib = daemon.json("library")
    assert lib["loops"] >= 2 and lib["mb"] > 0 and len(lib["entries"]) <= 20
    assert daemon.ok("status").count("\n") == 1  # one line
    verbose = daemon.ok("status", "-v")
    for word in ("generator:", "library:", "output:", "daemon:", "stats:"):
        assert word in verbose
    # The synth has made clips by now: its line names the SoundFont, no MusicGPT model.
    line = next(x for x in verbose.splitlines() if x.startswith("generator:"))
    assert line.startswith("generator:  synth (soundfont ") and "model" not in line, line


def test_watch_prints_events_in_order(daemon):
    watcher = subprocess.Popen(
        [sys.executable, "-m", "infiniloopctl", "watch", "--json"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let the subscription settle
        daemon.ok("volume", "55")
        daemon.ok("volume", "56")
        events = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = watcher.stdout.readline()
            events.append(json.loads(line))
            if [e["data"].get("volume") for e in events if e["event"] == "volume"] == [55, 56]:
                break
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps
    finally:
        watcher.terminate()
        watcher.wait(5)
        daemon.ok("volume", "80")


def test_missed_events_can_be_fetched(daemon):
    last = daemon.status()["last_seq"]
    daemon.ok("volume", "70")
    daemon.ok("volume", "80")
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"ipc://{daemon.runtime}/control.sock")
    s.send_json({"v": 1, "cmd": "events", "args": {"since": last}})
    assert s.poll(5000)
    events = s.recv_json()["result"]["events"]
    s.close()
    vols = [e["data"]["volume"] for e in events if e["event"] == "volume"]
    assert vols == [70, 80]
    assert [e["seq"] for e in events] == list(range(last + 1, last + 1 + len(events)))


def test_garbage_never_stops_the_server(daemon):
    ctx = zmq.Context.instance()
    endpoint = f"ipc://{daemon.runtime}/control.sock"
    rng = random.Random(7)
    codes = set()
    req = None
    for i in range(1000):
        if req is None:
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            req.connect(endpoint)
        kind = i % 8
        if kind == 0:
            frames = [rng.randbytes(rng.randint(0, 300))]
        elif kind == 1:
            frames = [json.dumps({"cmd": rng.choice(["volume", "save", "x"]), "args": {
                "value": rng.choice([None, [], {}, "++", 1e309 if False else 1e300, -5, "x"]),
                "path": rng.choice([1, "/etc/passwd", "..", ""]),
            }}).encode()]  # fmt: skip
        elif kind == 2:
            frames = [b'{"cmd": "ping"}', rng.randbytes(10)]  # multipart
        elif kind == 3:
            frames = [b"[" * rng.randint(1000, 20000)]
        elif kind == 4:
            frames = [json.dumps(rng.choice([[], 1, "s", None, {"cmd": None}])).encode()]
        elif kind == 5:
            frames = [json.dumps({"v": 1, "cmd": "prompt", "args": {"text": "\0"}}).encode()]
        elif kind == 6:
            frames = [json.dumps({"cmd": "library", "args": {"limit": -1}}).encode()]
        else:
            frames = [json.dumps({"cmd": "crossfade", "args": {"seconds": "nan"}}).encode()]
        req.send_multipart(frames)
        assert req.poll(3000), f"no reply to message {i}"
        reply = json.loads(req.recv())
        assert reply["ok"] is False, (i, frames[0][:80], reply)
        codes.add(reply["error"]["code"])
    req.close()
    assert codes <= {"bad_request", "unknown_command", "bad_argument", "too_large"}
    # Oversized frames make ZeroMQ drop the peer; raw DEALER peers without a delimiter.
    big = ctx.socket(zmq.REQ)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(endpoint)
    big.send(b"x" * (200 * 1024))
    assert not big.poll(300)
    big.close()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoint)
    for _ in range(20):
        raw.send_multipart([rng.randbytes(8), rng.randbytes(8)])
    raw.close()
    assert daemon.ok("ping").strip() == "pong"
    assert daemon.status()["state"] in ("playing", "paused", "stopped")


def test_second_instance_refuses(daemon):
    r = subprocess.run(
        [sys.executable, "-m", "infiniloopd", "--config", str(daemon.config_path)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert f"already running (pid {daemon.proc.pid}" in r.stderr
    assert daemon.ok("ping").strip() == "pong"


# --- lifecycle: reload, SIGTERM, restart --------------------------------------------------


def test_reload_stop_and_restart(tmp_path):
    d = Daemon(tmp_path, notify=True)
    try:
        d.start()
        n = d.notify
        assert n is not None
        # A valid new config: new crossfade, and a new output file, without a restart.
        cfg = base_config(tmp_path / "out2.wav")
        cfg["playback"]["crossfade"] = 2.5
        d.write_config(cfg)
        mark = len(n.lines())
        d.signal(signal.SIGHUP)
        reloading = n.wait_for("RELOADING=1", after=mark)
        assert reloading
        assert n.wait_for("MONOTONIC_USEC=", after=mark)
        n.wait_for("READY=1", after=mark)
        st = d.wait_status(lambda s: s["crossfade"] == 2.5, 10, "the new crossfade")
        assert "out2.wav" in st["output"]
        time.sleep(1.0)
        x = d.samples(tmp_path / "out2.wav")
        assert len(x) > 0.5 * RATE and rms(x[-RATE // 2 :]) > 0.01
        assert d.proc.poll() is None

        # An invalid config: the same one-line error as at start-up, old config kept.
        d.write_config("playback:\n  crossfade: long\n")
        startup = subprocess.run(
            [sys.executable, "-m", "infiniloopd", "--config", str(d.config_path)],
            env={**d.env, "XDG_RUNTIME_DIR": str(tmp_path / "other")},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert startup.returncode == 1
        message = startup.stderr.strip().removeprefix("infiniloopd: ")
        assert "playback.crossfade" in message and "\n" not in message
        r = d.ctl("reload")
        assert r.returncode == 1 and message in r.stderr
        mark = len(n.lines())
        d.signal(signal.SIGHUP)
        n.wait_for("READY=1", after=mark)
        time.sleep(0.3)
        assert d.log().count(message) >= 2  # once for `reload`, once for SIGHUP
        assert d.status()["crossfade"] == 2.5
        assert d.proc.poll() is None

        # SIGTERM: fade out within 0.5 s, save state, remove the sockets, exit 0.
        d.write_config(cfg)
        d.ok("prompt", "deep", "space", "drone")
        d.ok("volume", "66")
        time.sleep(0.5)
        played = d.json("history")["entries"]
        assert played
        assert d.stop() == 0
        n.wait_for("STOPPING=1")
        assert not (d.runtime / "control.sock").exists()
        assert not (d.runtime / "events.sock").exists()
        state = json.loads((tmp_path / "state" / "infiniloop" / "state.json").read_text())
        assert state["prompt"] == "deep space drone" and state["volume"] == 66
        check_fade_out(d.samples(tmp_path / "out2.wav"))

        # Not running: exit 3 with a hint how to start it.
        r = d.ctl("status")
        assert r.returncode == 3 and "systemctl --user start infiniloop" in r.stderr

        # Restart: the prompt and volume come back, and it plays from the library at once.
        d.start(wait_loop=False)
        st = d.status()
        assert st["prompt"] == "deep space drone" and st["volume"] == 66
        assert st["loop"] is not None  # from the library, before any generation finished
        # The history of what played before the restart is still there, behind the new.
        again = d.json("history")["entries"]
        assert again[-len(played) :] == played and again[0]["id"] == st["loop"]["id"]
    finally:
        d.stop()
        d.close()


def check_fade_out(x: np.ndarray) -> None:
    env = window_rms(x, RATE, 20)
    loud = np.flatnonzero(env > 0.01)
    assert len(loud), "nothing was played"
    ref = np.median(env[max(0, loud[-1] - 100) : loud[-1]])  # the level before the end
    last_loud = np.flatnonzero(env > 0.5 * ref)[-1]
    silent = np.flatnonzero(env[last_loud:] < 0.01 * ref)
    assert len(silent), "the file does not end in silence"
    fade_windows = silent[0]
    assert 3 <= fade_windows <= 25, fade_windows  # ramped, not cut; at most 0.5 s
    assert env[last_loud + fade_windows :].max() < 0.02 * ref


def test_bad_config_at_start_is_one_line(tmp_path):
    d = Daemon(tmp_path)
    d.write_config("output:\n  rate: fast\n")
    r = subprocess.run(
        [sys.executable, "-m", "infiniloopd", "--config", str(d.config_path)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1
    assert "output.rate: expected an integer between 8000 and 192000" in r.stderr
