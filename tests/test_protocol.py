"""The control protocol: message codec, validation and endpoint discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from infiniloopd import protocol
from infiniloopd.frontends.zmq.server import Arg, Command, validate
from infiniloopd.protocol import ProtocolError


def test_request_round_trip():
    raw = protocol.encode_request("volume", {"value": "+5"})
    assert json.loads(raw) == {"v": 1, "cmd": "volume", "args": {"value": "+5"}}
    assert protocol.decode_request([raw]) == ("volume", {"value": "+5"})


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"not json"], protocol.BAD_REQUEST),
        ([b"\xff\xfe"], protocol.BAD_REQUEST),
        ([b"[1, 2]"], protocol.BAD_REQUEST),
        ([b'{"cmd": 5}'], protocol.BAD_REQUEST),
        ([b'{"cmd": "ping", "args": [1]}'], protocol.BAD_REQUEST),
        ([b'{"v": 2, "cmd": "ping"}'], protocol.BAD_REQUEST),
        ([b'{"cmd": "ping"}', b"extra"], protocol.BAD_REQUEST),
        ([], protocol.BAD_REQUEST),
        ([b"[" * 50000 + b"]" * 50000], protocol.TOO_LARGE),
        ([b"[" * 30000 + b"]" * 30000], protocol.BAD_REQUEST),  # deep nesting, not a crash
    ],
)
def test_bad_requests_raise_protocol_errors(frames, code):
    with pytest.raises(ProtocolError) as info:
        protocol.decode_request(frames)
    assert info.value.code == code
    assert "\n" not in str(info.value)


def test_reply_codec():
    assert protocol.decode_reply(protocol.encode_ok({"a": 1})) == {"a": 1}
    with pytest.raises(ProtocolError) as info:
        protocol.decode_reply(protocol.encode_error(protocol.NOT_FOUND, "no preset 'x'"))
    assert info.value.code == protocol.NOT_FOUND and str(info.value) == "no preset 'x'"
    with pytest.raises(ProtocolError):
        protocol.decode_reply(b"garbage")


def test_event_codec_keeps_sequence():
    raw = protocol.encode_event(7, "volume", {"volume": 40}, 1.5)
    event = protocol.decode_event(raw)
    assert (event["seq"], event["event"], event["data"], event["time"]) == (
        7,
        "volume",
        {"volume": 40},
        1.5,
    )


def test_validate_converts_and_refuses():
    cmd = Command(
        "volume",
        lambda a: a,
        (Arg("value", "step", lo=0, hi=100), Arg("keep", "bool"), Arg("name", max_len=5)),
    )
    assert validate(cmd, {"value": 40}) == {"value": 40.0, "keep": None, "name": None}
    assert validate(cmd, {"value": "+5"})["value"] == ("delta", 5.0)
    assert validate(cmd, {"value": "-12.5"})["value"] == ("delta", -12.5)
    for bad in (
        {"value": 101},
        {"value": -1},
        {"value": "5"},
        {"value": "+nan"},
        {"value": "+inf"},
        {"value": True},
        {"value": [1]},
        {"keep": "yes"},
        {"name": "toolong"},
        {"other": 1},
    ):
        with pytest.raises(ProtocolError) as info:
            validate(cmd, bad)
        assert info.value.code == protocol.BAD_ARGUMENT, bad


def test_required_argument():
    cmd = Command("preset", lambda a: a, (Arg("name", required=True),))
    with pytest.raises(ProtocolError, match="missing name"):
        validate(cmd, {})
    with pytest.raises(ProtocolError):
        validate(cmd, {"name": "  "})


def test_endpoint_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv(protocol.ENDPOINT_ENV, raising=False)
    ep = protocol.resolve_endpoints()
    assert ep.control == f"ipc://{tmp_path}/infiniloop/control.sock"
    assert ep.events == f"ipc://{tmp_path}/infiniloop/events.sock"
    assert (
        protocol.resolve_endpoints(configured="ipc:///x/y.sock").events == "ipc:///x/y.events.sock"
    )
    monkeypatch.setenv(protocol.ENDPOINT_ENV, "tcp://127.0.0.1:5555")
    ep = protocol.resolve_endpoints(configured="ipc:///x/y.sock")
    assert (ep.control, ep.events) == ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")
    assert protocol.resolve_endpoints("ipc:///o.sock").control == "ipc:///o.sock"
    with pytest.raises(Exception, match="--endpoint"):
        protocol.resolve_endpoints("http://x")


def test_client_reads_endpoint_from_config(tmp_path, monkeypatch):
    monkeypatch.delenv(protocol.ENDPOINT_ENV, raising=False)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("control:\n  endpoint: ipc:///tmp/elsewhere/c.sock\n")
    ep = protocol.resolve_endpoints(read_config=True, config_path=cfg)
    assert ep.control == "ipc:///tmp/elsewhere/c.sock"


def test_runtime_dir_fallback_under_bare_environment(tmp_path):
    """Under cron's `env -i` the client still finds a private runtime dir."""
    code = "from infiniloopd import protocol; print(protocol.default_control_endpoint())"
    out = subprocess.run(
        ["env", "-i", f"HOME={tmp_path}", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    uid = os.getuid()
    assert out in (
        f"ipc:///run/user/{uid}/infiniloop/control.sock",
        f"ipc:///tmp/infiniloop-{uid}/control.sock",
    )


def test_protocol_module_is_import_light():
    code = (
        "import sys, infiniloopd.protocol; "
        "print(sorted(m for m in ('numpy', 'yaml', 'zmq', 'librosa', 'soundfile') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_running_pid_reads_live_pid(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    lock = protocol.lock_path()
    lock.parent.mkdir(parents=True)
    assert protocol.running_pid() is None
    lock.write_text(f"{os.getpid()}\n")
    assert protocol.running_pid() == os.getpid()
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(f"{dead.pid}\n")
    assert protocol.running_pid() is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"cmd": "prompt", "args": {"text": "calm \\ud800 pads"}}',
        b'{"cmd": "prompt", "args": {"text": "\\udfff"}}',
        b'{"cmd": "prompt", "args": {"text": "bell\\u0007"}}',
        b'{"cmd": "prompt", "args": {"text": "a\\nb"}}',
        b'{"cmd": "prompt", "args": {"text": "a\\u009bb"}}',
    ],
)
def test_text_that_may_not_enter_is_refused_at_the_socket(raw):
    cmd = Command("prompt", lambda a: a, (Arg("text", max_len=1000),))
    name, args = protocol.decode_request([raw])
    with pytest.raises(ProtocolError) as info:
        validate(cmd, args)
    assert info.value.code == protocol.BAD_ARGUMENT
    message = str(info.value)
    assert message.startswith("prompt: text: expected text of at most 1000 characters, got ")
    message.encode("utf-8")  # the refusal itself is valid text
    assert "\n" not in message and "\x07" not in message


def test_client_checks_the_default_socket_is_its_own(tmp_path):
    import socket as pysocket
    import stat

    from infiniloopd import paths

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    sock_path = run / "control.sock"
    paths.check_own_socket(sock_path)  # nothing there yet: "not running" is said elsewhere
    s = pysocket.socket(pysocket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        paths.check_own_socket(sock_path)
        os.chmod(run, 0o777)  # e.g. a /tmp fallback anyone could have made
        with pytest.raises(paths.UserError, match="writable by others"):
            paths.check_own_socket(sock_path)
        os.chmod(run, 0o700)
        if os.getuid() == 0:  # root can play the other user who created the directory
            os.chown(run, 65534, -1)
            with pytest.raises(paths.UserError, match="belongs to uid 65534"):
                paths.check_own_socket(sock_path)
            os.chown(run, 0, -1)
    finally:
        s.close()
    sock_path.unlink()
    sock_path.write_text("")  # a plain file where the socket should be
    with pytest.raises(paths.UserError, match="not a socket"):
        paths.check_own_socket(sock_path)
    assert stat.S_ISREG(sock_path.lstat().st_mode)


def test_the_daemon_never_unlinks_what_is_not_a_socket(tmp_path):
    import asyncio

    from infiniloopd.errors import UserError
    from infiniloopd.frontends.zmq.server import ControlServer

    victim = tmp_path / "control.sock"
    victim.write_text("precious")
    ep = protocol.Endpoints(f"ipc://{victim}", f"ipc://{tmp_path / 'events.sock'}")

    async def main():
        server = ControlServer(ep, {})
        try:
            with pytest.raises(UserError, match="not a socket") as info:
                server.start()
            assert "\n" not in str(info.value)
        finally:
            server.close()

    asyncio.run(main())
    assert victim.read_text() == "precious"


def test_client_never_blocks_on_a_fifo_config_or_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv(protocol.ENDPOINT_ENV, raising=False)
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    eps = protocol.resolve_endpoints(config_path=fifo, read_config=True)
    assert eps.control == protocol.default_control_endpoint()
    (tmp_path / "run" / "infiniloop").mkdir(parents=True)
    os.mkfifo(protocol.lock_path())
    assert protocol.running_pid() is None


def test_replies_and_events_are_valid_utf8_even_with_a_stray_surrogate():
    for raw in (
        protocol.encode_ok({"last_error": "server said \ud800", "prompt": "é🎵"}),
        protocol.encode_error("failed", "bad \udcff name"),
        protocol.encode_event(1, "error", {"message": "x\ud800"}, 1.0),
    ):
        text = raw.decode("utf-8")  # strict
        assert "\\ud" not in text
    assert protocol.decode_reply(protocol.encode_ok({"prompt": "é🎵 \ud800"})) == {
        "prompt": "é🎵 ?"
    }
