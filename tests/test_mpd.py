"""The MPD frontend: the real daemon driven by the real `mpc` and by python-mpd2."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time

import pytest

from tests.daemon_proc import Daemon, base_config

mpd = pytest.importorskip("mpd", reason="needs python-mpd2 (pip install -e .[test])")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("mpc"), reason="needs mpc (install.sh --test)"),
]

PASSWORD = "s3cret word"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpd")
    cfg = base_config(root / "out.wav")
    cfg["playback"]["min_play"] = 3600.0  # no automatic switch: changes come from the test
    cfg["mpris"] = False
    port = free_port()
    cfg["mpd"] = {"listen": f"127.0.0.1:{port}", "password": PASSWORD}
    d = Daemon(root, cfg)
    d.mpd_port = port
    try:
        yield d.start()
    finally:
        d.stop()
        d.close()


def mpc(d: Daemon, *args: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess:
    host = f"{password}@127.0.0.1" if password else "127.0.0.1"
    return subprocess.run(
        ["mpc", "-h", host, "-p", str(d.mpd_port), *args],
        capture_output=True,
        text=True,
        timeout=15,
    )


def mpc_ok(d: Daemon, *args: str) -> str:
    r = mpc(d, *args)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r.stdout


@contextlib.contextmanager
def client(d: Daemon, password: str | None = PASSWORD):
    c = mpd.MPDClient()
    c.timeout = 15
    c.connect("127.0.0.1", d.mpd_port)
    try:
        if password:
            c.password(password)
        yield c
    finally:
        with contextlib.suppress(Exception):
            c.close()
        c.disconnect()


class Raw:
    """A plain socket speaking the protocol, to check bytes exactly."""

    def __init__(self, d: Daemon) -> None:
        self.sock = socket.create_connection(("127.0.0.1", d.mpd_port), timeout=15)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\n")

    def ask(self, text: str) -> list[str]:
        self.sock.sendall(text.encode() + b"\n")
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line == "OK" or line.startswith("ACK ") or not line:
                return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_greeting_and_mpd_errors(daemon):
    raw = Raw(daemon)
    try:
        assert raw.greeting == "OK MPD 0.23.0"
        assert raw.ask("ping") == ["OK"]
        # Before `password`, only a few commands are allowed.
        assert raw.ask("status") == ['ACK [4@0] {status} you don\'t have permission for "status"']
        assert raw.ask("password wrong") == ["ACK [3@0] {password} incorrect password"]
        assert raw.ask(f'password "{PASSWORD}"') == ["OK"]
        assert raw.ask("frobnicate 1 2") == ['ACK [5@0] {} unknown command "frobnicate"']
        assert raw.ask("setvol 101") == ["ACK [2@0] {setvol} Invalid volume value"]
        assert raw.ask("previous")[0].startswith("ACK [50@0] {previous} ")
        assert raw.ask("random 0") == ["OK"]
        assert raw.ask("random 1") == [
            "ACK [2@0] {random} random: an endless stream cannot change it"
        ]
        assert raw.ask("lsinfo") == ["OK"]
        assert raw.ask("idle nonsense") == ["ACK [2@0] {idle} Unrecognized idle event: nonsense"]
        assert raw.ask('status "unterminated')[0].startswith("ACK [2@0] {} ")
        # A command list stops at the first error, which names its index.
        raw.sock.sendall(b"command_list_ok_begin\nping\ngetvol\nbogus\nping\ncommand_list_end\n")
        lines = [raw.line() for _ in range(4)]
        assert lines[0] == "list_OK"
        assert lines[1].startswith("volume: ")
        assert lines[2] == "list_OK"
        assert lines[3] == 'ACK [5@2] {} unknown command "bogus"'
        assert raw.ask("ping") == ["OK"]
        raw.sock.sendall(b"close\n")
        assert raw.line() == ""
    finally:
        raw.close()


def test_mpc_status_and_current(daemon):
    daemon.ok("play")
    st = daemon.status()
    current = mpc_ok(daemon, "current").strip()
    assert current == f"synth - {st['loop']['prompt']}"
    out = mpc_ok(daemon, "status")
    assert "[playing]" in out
    assert f"volume:{st['volume']:3d}%" in out
    # Without the password mpc is refused, with MPD's message.
    r = mpc(daemon, "status", password=None)
    assert r.returncode != 0
    assert "permission" in r.stderr


def test_mpc_controls_the_daemon(daemon):
    mpc_ok(daemon, "pause")
    assert daemon.wait_status(lambda s: s["state"] == "paused", 10, "paused")
    assert "[paused]" in mpc_ok(daemon, "status")
    mpc_ok(daemon, "toggle")
    assert daemon.wait_status(lambda s: s["state"] == "playing", 10, "playing")
    mpc_ok(daemon, "stop")
    assert daemon.wait_status(lambda s: s["state"] == "stopped", 10, "stopped")
    mpc_ok(daemon, "play")
    assert daemon.wait_status(lambda s: s["state"] == "playing", 10, "playing")
    mpc_ok(daemon, "volume", "40")
    assert daemon.status()["volume"] == 40
    mpc_ok(daemon, "volume", "+5")
    assert daemon.status()["volume"] == 45
    mpc_ok(daemon, "crossfade", "3")
    assert daemon.status()["crossfade"] == 3.0
    assert mpc_ok(daemon, "crossfade").strip() == "crossfade: 3"
    r = mpc(daemon, "crossfade", "99")  # the session's own bound (0-60 s)
    assert r.returncode != 0 and "crossfade" in r.stderr
    daemon.ok("crossfade", "1")
    daemon.ok("volume", "80")


def test_mpc_next_and_playlist(daemon):
    daemon.ok("play")
    daemon.wait_status(lambda s: s["queue"] >= 1, 60, "a ready loop")
    st = daemon.status()
    playlist = mpc_ok(daemon, "playlist").splitlines()
    assert len(playlist) == 1 + st["queue"]
    assert playlist[0] == f"synth - {st['loop']['prompt']}"
    before = st["loop"]["id"]
    mpc_ok(daemon, "next")
    after = daemon.wait_status(lambda s: s["loop"]["id"] != before, 10, "the next loop")
    with client(daemon) as c:
        song = c.currentsong()
        assert song["file"] == f"infiniloop://loop/{after['loop']['id']}"
        assert song["pos"] == "0"
        assert abs(float(song["duration"]) - after["loop"]["seconds"]) < 0.01


def test_python_mpd2_status_and_lists(daemon):
    with client(daemon) as c:
        st = c.status()
        ours = daemon.status()
        assert (
            st["state"] == {"playing": "play", "paused": "pause", "stopped": "stop"}[ours["state"]]
        )
        assert int(st["volume"]) == ours["volume"]
        assert int(st["playlistlength"]) == len(c.playlistinfo())
        outputs = c.outputs()
        assert outputs and outputs[0]["outputenabled"] == "1"
        commands = c.commands()
        for name in ("status", "idle", "noidle", "setvol", "playlistinfo", "outputs"):
            assert name in commands
        assert c.notcommands() == []
        assert c.urlhandlers() == [] and c.decoders() == []
        assert "Title" in c.tagtypes()
        assert int(c.stats()["songs"]) >= 1
        with pytest.raises(mpd.CommandError, match="only goes forwards"):
            c.previous()
        c.command_list_ok_begin()
        c.ping()
        c.status()
        replies = c.command_list_end()
        assert len(replies) == 2
        assert int(replies[1]["volume"]) == ours["volume"]


def test_idle_wakes_many_clients_on_session_events(daemon):
    """Ten clients idling at once all hear a volume change made through infiniloopctl."""
    results: list[list[str]] = []
    lock = threading.Lock()

    def wait_idle(c):
        got = c.idle("mixer", "options")
        with lock:
            results.append(got)

    waiters = []
    for _ in range(10):
        c = mpd.MPDClient()
        c.timeout = 15
        c.connect("127.0.0.1", daemon.mpd_port)
        c.password(PASSWORD)
        waiters.append(c)
    threads = [threading.Thread(target=wait_idle, args=(c,)) for c in waiters]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)  # all of them in idle
        assert results == []
        daemon.ok("volume", "33")
        for t in threads:
            t.join(15)
        assert results == [["mixer"]] * 10
    finally:
        for c in waiters:
            with contextlib.suppress(Exception):
                c.disconnect()
        daemon.ok("volume", "80")


def test_noidle_ends_idle(daemon):
    raw = Raw(daemon)
    try:
        assert raw.ask(f'password "{PASSWORD}"') == ["OK"]
        raw.sock.sendall(b"idle player\n")
        time.sleep(0.3)
        assert raw.ask("noidle") == ["OK"]
        raw.sock.sendall(b"idle player\n")
        daemon.ok("pause")
        assert [raw.line(), raw.line()] == ["changed: player", "OK"]
        daemon.ok("play")
    finally:
        raw.close()


def test_a_client_that_never_reads_is_dropped_and_stalls_nothing(daemon):
    stuck = socket.create_connection(("127.0.0.1", daemon.mpd_port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.setblocking(False)
    request = f'password "{PASSWORD}"\n'.encode() + b"playlistinfo\nstatus\n" * 2000
    sent = 0
    with contextlib.suppress(BlockingIOError):
        for _ in range(200):
            sent += stuck.send(request)
    assert sent > 0
    try:
        # Meanwhile the daemon plays on and other clients are answered.
        for _ in range(5):
            assert "[playing]" in mpc_ok(daemon, "status")
            assert daemon.status()["state"] == "playing"
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while "dropping a client" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "mpd: dropping a client that does not read its replies" in daemon.log()
    finally:
        stuck.close()
    assert "[playing]" in mpc_ok(daemon, "status")


def test_port_in_use_is_one_warning_and_the_daemon_plays(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = base_config(tmp_path / "out.wav")
        cfg["mpris"] = False
        cfg["mpd"] = {"listen": f"127.0.0.1:{port}"}
        d = Daemon(tmp_path, cfg)
        try:
            d.start()
            assert d.status()["state"] == "playing"
            warnings = [line for line in d.log().splitlines() if "mpd:" in line]
            assert len(warnings) == 1, warnings
            assert f"cannot listen on 127.0.0.1:{port}" in warnings[0]
        finally:
            d.stop()
            d.close()


def test_split_args_follows_mpd_quoting():
    from infiniloopd.frontends.mpd import MpdError, split_args

    assert split_args("status") == ["status"]
    assert split_args('password "a \\"b\\" c\\\\d"  x') == ["password", 'a "b" c\\d', "x"]
    assert split_args("  setvol\t50 ") == ["setvol", "50"]
    assert split_args('find "" x') == ["find", "", "x"]
    with pytest.raises(MpdError, match="closing"):
        split_args('password "open')
    with pytest.raises(MpdError, match="Space expected"):
        split_args('a "b"c')
