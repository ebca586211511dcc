"""infiniloopctl against a real daemon and against no daemon: output, exit codes, cron."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import zmq

from infiniloopd import protocol
from tests.daemon_proc import Daemon, base_config

STATUS_RE = re.compile(
    r"^(playing|paused|stopped)  (loop \d+/\d+  \d+:\d\d/\d+:\d\d|no loop yet)  vol \d+%  "
    r'(generating( \d+%)?  )?queue \d+  (failing x\d+  )?".*"$'
)


def ctl(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infiniloopctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def bare_env(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    env.pop(protocol.ENDPOINT_ENV, None)
    (tmp_path / "run").mkdir(mode=0o700)
    return env


def test_not_running_exits_3_with_hint(bare_env):
    r = ctl(bare_env, "status")
    assert r.returncode == 3
    assert "not running" in r.stderr
    assert "systemctl --user start infiniloop" in r.stderr and "infiniloopd" in r.stderr
    assert r.stdout == ""


def test_stale_socket_exits_3_at_once(bare_env, tmp_path):
    run = tmp_path / "run" / "infiniloop"
    run.mkdir(mode=0o700)
    (run / "control.sock").touch()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / "daemon.lock").write_text(f"{dead.pid}\n")
    t0 = time.monotonic()
    r = ctl(bare_env, "ping")
    assert r.returncode == 3 and "stale socket" in r.stderr
    assert time.monotonic() - t0 < 4  # did not wait for the request timeout


def test_silent_daemon_times_out(bare_env, tmp_path):
    run = tmp_path / "run" / "infiniloop"
    run.mkdir(mode=0o700)
    (run / "daemon.lock").write_text(f"{os.getpid()}\n")
    ctx = zmq.Context.instance()
    mute = ctx.socket(zmq.ROUTER)  # accepts requests, never answers
    mute.setsockopt(zmq.LINGER, 0)
    mute.bind(f"ipc://{run}/control.sock")
    try:
        r = ctl(bare_env, "--timeout", "0.5", "status")
    finally:
        mute.close()
    assert r.returncode == 3
    assert "no answer from the daemon" in r.stderr and "0.5 s" in r.stderr


def test_usage_errors_exit_2_without_a_daemon(bare_env):
    for args in (["volume", "x"], ["nosuch"], ["crossfade", "abc"], ["--timeout", "0", "ping"]):
        r = ctl(bare_env, *args)
        assert r.returncode == 2, (args, r.stderr)
    assert ctl(bare_env, "--help").returncode == 0
    r = ctl(bare_env, "--endpoint", "http://nope", "ping")
    assert r.returncode == 2 and "--endpoint" in r.stderr


def test_client_imports_stay_small():
    code = (
        "import sys, infiniloopctl.__main__; "
        "print(sorted(m for m in ('numpy', 'yaml', 'librosa', 'soundfile', 'asyncio') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctl")
    cfg = base_config(root / "out.wav")
    cfg["output"] = {"backend": "null"}
    d = Daemon(root, cfg)
    try:
        yield d.start()
    finally:
        d.stop()
        d.close()


def test_status_line_like_mpc(daemon):
    out = daemon.ok("status")
    assert out.count("\n") == 1
    assert STATUS_RE.match(out.rstrip("\n")), out
    assert daemon.ok() == out or STATUS_RE.match(daemon.ok().rstrip("\n"))  # the default


def test_json_on_every_command(daemon):
    for args in (
        ["status"],
        ["ping"],
        ["version"],
        ["queue"],
        ["history"],
        ["library"],
        ["presets"],
        ["volume"],
        ["crossfade"],
        ["min-play"],
        ["model"],
        ["duration"],
        ["generator"],
        ["prompt"],
        ["play"],
        ["reload"],
    ):
        r = daemon.ctl(*args, "--json")
        assert r.returncode == 0, (args, r.stderr)
        assert isinstance(json.loads(r.stdout), dict), args
        # --json before the command works as well.
        assert json.loads(daemon.ctl("--json", *args).stdout) is not None
    v = daemon.json("version")
    assert v["protocol"] == protocol.VERSION


def test_refusal_exits_1_with_message_on_stderr(daemon):
    r = daemon.ctl("preset", "nope")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("infiniloopctl: preset: no preset 'nope'")


def test_sleep_timer_set_shown_and_cancelled(daemon):
    out = daemon.ok("sleep", "30m")
    assert re.match(r"sleep: pausing in (29:\d\d|30:00)\n$", out), out
    st = daemon.json("status")
    assert 1700 < st["sleep"]["remaining"] <= 1800
    assert "  sleep 29:" in daemon.ok("status")
    assert daemon.ok("sleep", "off").strip() == "sleep: off"
    assert daemon.json("status")["sleep"] is None
    r = daemon.ctl("sleep", "soon")
    assert r.returncode == 1 and "sleep: expected a duration such as 45s" in r.stderr
    assert daemon.json("status")["state"] == "playing"


def test_endpoint_override_and_env(daemon):
    ep = f"ipc://{daemon.runtime}/control.sock"
    env = {k: v for k, v in daemon.env.items() if k != "XDG_RUNTIME_DIR"}
    assert ctl(env, "--endpoint", ep, "ping").stdout.strip() == "pong"
    assert ctl({**env, protocol.ENDPOINT_ENV: ep}, "ping").stdout.strip() == "pong"


def test_watch_prints_events_and_exits_after_count(daemon):
    p = subprocess.Popen(
        [sys.executable, "-m", "infiniloopctl", "watch", "--count", "3"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    daemon.ok("crossfade", "1.5")
    daemon.ok("crossfade", "1.25")
    daemon.ok("crossfade", "1")
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0
    lines = out.splitlines()
    assert len(lines) == 3  # exactly --count events, then exit
    assert "option name=crossfade value=1.5" in lines or lines[0].split()[0] != "option"


def test_cron_environment(tmp_path):
    """A crontab line runs with `env -i`: no XDG_RUNTIME_DIR, minimal PATH."""
    probe = subprocess.run(
        [
            "env",
            "-i",
            sys.executable,
            "-c",
            "from infiniloopd import protocol as p; print(p.running_pid() or '')",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    if probe.stdout.strip():
        pytest.skip("a daemon already runs in this user's fallback runtime dir")
    cfg = base_config(tmp_path / "out.wav")
    cfg["output"] = {"backend": "null"}
    d = Daemon(tmp_path, cfg, runtime_env=False)
    try:
        d.start(wait_loop=False)
        cron = ["env", "-i", "PATH=/usr/bin:/bin", sys.executable, "-m", "infiniloopctl"]
        r = subprocess.run([*cron, "preset", "morning"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("preset morning: ")
        r = subprocess.run([*cron, "status"], capture_output=True, text=True)
        assert r.returncode == 0 and STATUS_RE.match(r.stdout.rstrip("\n")), r.stdout
    finally:
        d.stop()
        d.close()


def test_closed_pipe_is_quiet(daemon):
    # `infiniloopctl presets | head -1`: the reader leaves early; no traceback, exit 0.
    p = subprocess.Popen(
        [sys.executable, "-m", "infiniloopctl", "presets"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None
    p.stdout.close()  # closed before the client writes
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_tcp_endpoint_needs_curve_and_works_with_the_key(tmp_path):
    import socket

    import zmq.auth

    public, secret = zmq.auth.create_certificates(str(tmp_path), "server")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _client_public, client_secret = zmq.auth.create_certificates(str(allowed), "laptop")
    _other_public, other_secret = zmq.auth.create_certificates(str(tmp_path), "stranger")
    for key in (secret, client_secret, other_secret):
        os.chmod(key, 0o600)  # pyzmq writes them 0644; the daemon refuses that
    with socket.socket() as s:  # a free port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    cfg = base_config(tmp_path / "out.wav")
    cfg["control"] = {
        "endpoint": endpoint,
        "curve_secret_key_file": secret,
        "curve_allowed_keys_dir": str(allowed),
    }
    d = Daemon(tmp_path, cfg)
    d.env[protocol.ENDPOINT_ENV] = endpoint
    d.env[protocol.SERVER_KEY_ENV] = public
    d.env[protocol.CLIENT_KEY_ENV] = client_secret
    try:
        d.start(wait_loop=False)
        assert d.ok("ping").strip() == "pong"
        # Without the server's key the client refuses to talk in the clear (usage error).
        env = {k: v for k, v in d.env.items() if k != protocol.SERVER_KEY_ENV}
        assert ctl(env, "ping").returncode == 2
        # A key pair that is not in the allow-list is refused at the handshake.
        stranger = {**d.env, protocol.CLIENT_KEY_ENV: other_secret}
        r = ctl(stranger, "ping", "--timeout", "2")
        assert r.returncode != 0 and "no answer" in r.stderr, r.stderr
        assert "refused a CURVE client with an unlisted key" in d.log()
        # A plain ZeroMQ client gets no answer at all from the encrypted socket.
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.linger = 0
        sock.connect(endpoint)
        sock.send(protocol.encode_request("ping", {}))
        assert sock.poll(1500) == 0
        sock.close(0)
    finally:
        d.stop()
        d.close()
