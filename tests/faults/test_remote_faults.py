"""Remote control over tcp:// with CURVE: only allow-listed client keys get in, a
world-readable secret key is refused, and connections that never finish a handshake
are dropped (so they cannot use up the daemon's file descriptors)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
import zmq.auth

from infiniloopd import protocol
from infiniloopd.config import ConfigError, parse_config
from infiniloopd.errors import UserError
from infiniloopd.frontends.zmq.server import Command, ControlServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def keys(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(str(tmp_path), "server")
    _pub, laptop = zmq.auth.create_certificates(str(allowed), "laptop")
    _pub, stranger = zmq.auth.create_certificates(str(tmp_path), "stranger")
    for path in (server_secret, laptop, stranger):
        os.chmod(path, 0o600)
    return {
        "server_public": protocol.read_curve_key(tmp_path / "server.key", secret=False),
        "server_secret": protocol.read_curve_key(tmp_path / "server.key_secret", secret=True),
        "allowed": protocol.read_allowed_keys(allowed),
        "laptop": laptop,
        "stranger": stranger,
        "secret_path": tmp_path / "server.key_secret",
    }


def _ask(endpoint: str, server_public: bytes, client_secret_file: str, wait_ms: int) -> bool:
    """Whether a CURVE REQ client with this key pair gets an answer to ping."""
    secret = protocol.read_curve_key(Path(client_secret_file), secret=True)
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.REQ)
        s.linger = 0
        s.curve_serverkey = server_public
        s.curve_secretkey = secret
        s.curve_publickey = zmq.curve_public(secret)
        s.connect(endpoint)
        s.send(protocol.encode_request("ping"))
        answered = bool(s.poll(wait_ms))
        s.close(0)
        return answered
    finally:
        ctx.term()


def _serve(endpoint: str, keys: dict, *, handshake_ms: int, body):
    """Run a real ControlServer on `endpoint` while `body(server)` runs in a thread."""

    async def main():
        control = protocol.Endpoints(endpoint, protocol.events_endpoint_for(endpoint))
        server = ControlServer(
            control,
            {"ping": Command("ping", lambda _a: {"pong": True})},
            curve_secret=keys["server_secret"],
            curve_allowed=keys["allowed"],
            handshake_ms=handshake_ms,
        )
        server.start()
        task = asyncio.create_task(server.serve())
        try:
            return await asyncio.to_thread(body, server)
        finally:
            server.close()
            task.cancel()

    return asyncio.run(main())


def test_only_allow_listed_client_keys_get_in(keys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    def body(_server):
        return (
            _ask(endpoint, keys["server_public"], keys["laptop"], 5000),
            _ask(endpoint, keys["server_public"], keys["stranger"], 1500),
        )

    laptop, stranger = _serve(endpoint, keys, handshake_ms=5000, body=body)
    assert laptop is True
    assert stranger is False


def test_an_empty_allow_list_lets_nobody_in(keys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    keys = {**keys, "allowed": frozenset()}
    got_in = _serve(
        endpoint,
        keys,
        handshake_ms=5000,
        body=lambda _s: _ask(endpoint, keys["server_public"], keys["laptop"], 1500),
    )
    assert got_in is False


def test_connections_that_never_handshake_are_dropped(keys):
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"

    def body(_server):
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        closed_after = []
        t0 = time.monotonic()
        for s in silent:
            s.settimeout(15)
            try:
                while s.recv(4096):  # the server's greeting, then EOF when it drops us
                    pass
            except TimeoutError:
                closed_after.append(None)
                continue
            finally:
                s.close()
            closed_after.append(time.monotonic() - t0)
        return closed_after

    closed = _serve(endpoint, keys, handshake_ms=300, body=body)
    assert None not in closed, "a connection that sent nothing was kept open"


def test_a_secret_key_readable_by_others_is_refused(keys):
    path = keys["secret_path"]
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match="readable by others") as info:
        protocol.read_curve_key(path, secret=True)
    assert "\n" not in str(info.value)


def test_a_tcp_endpoint_without_an_allow_list_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"control": {"endpoint": "tcp://127.0.0.1:5555", "curve_secret_key_file": "/k"}},
            "c.yaml",
        )
    assert str(info.value) == (
        "c.yaml: control.endpoint: a tcp:// endpoint needs control.curve_allowed_keys_dir "
        "(the client public keys allowed in), got none"
    )


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_an_oversized_request_is_dropped_without_buffering_it_and_pings_go_on(tmp_path):
    endpoint = f"ipc://{tmp_path / 'control.sock'}"
    sender = (
        "import sys, zmq\n"
        "ctx = zmq.Context()\n"
        "s = ctx.socket(zmq.DEALER)\n"
        "s.connect(sys.argv[1])\n"
        "big = b'x' * (64 * 1024 * 1024)\n"
        "for _ in range(3):\n"
        "    s.send_multipart([b'', big])\n"
        "s.close(linger=20000)\n"
        "ctx.term()\n"
    )

    def body(server):
        import subprocess
        import sys

        before = _peak_rss_mb()
        flood = subprocess.Popen([sys.executable, "-c", sender, endpoint])
        answered_while_flooding = pings = 0
        ctx = zmq.Context()
        try:
            while flood.poll() is None:
                s = ctx.socket(zmq.REQ)
                s.linger = 0
                s.connect(endpoint)
                s.send(protocol.encode_request("ping"))
                pings += 1
                assert s.poll(5000), "a ping went unanswered during the flood"
                assert protocol.decode_reply(s.recv()) == {"pong": True}
                s.close(0)
                if flood.poll() is None:
                    answered_while_flooding += 1
            flood.wait(60)
        finally:
            flood.kill()
            ctx.term()
        return answered_while_flooding, _peak_rss_mb() - before, server.requests - pings

    answered, grew_mb, others = _serve_ipc(endpoint, body)
    assert answered >= 1, "no ping was answered while the big requests were arriving"
    # 192 MB were sent; none of it was kept (MAXMSGSIZE drops the peer at the header).
    assert grew_mb < 48, f"the server grew by {grew_mb:.0f} MB"
    assert others == 0, "an oversized request reached the dispatcher"


def _serve_ipc(endpoint: str, body):
    async def main():
        ep = protocol.Endpoints(endpoint, endpoint.replace("control.sock", "events.sock"))
        server = ControlServer(ep, {"ping": Command("ping", lambda _a: {"pong": True})})
        server.start()
        task = asyncio.create_task(server.serve())
        try:
            return await asyncio.to_thread(body, server)
        finally:
            server.close()
            task.cancel()

    return asyncio.run(main())


def test_http_listeners_that_never_send_a_request_are_dropped(monkeypatch):
    from infiniloopd.outputs import http as http_output

    monkeypatch.setattr(http_output._Handler, "timeout", 0.5)
    port = free_port()
    out = http_output.HttpOutput(f"127.0.0.1:{port}", formats=("mp3",))
    out.open(48000, 2)
    try:
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        dropped = 0
        for s in silent:
            s.settimeout(15)
            try:
                dropped += s.recv(1) == b""  # EOF: the server gave up on us
            except TimeoutError:
                pass
            finally:
                s.close()
        assert dropped == len(silent), f"{len(silent) - dropped} idle connections kept"
        # A real listener still gets its stream.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.0 200")
    finally:
        out.close()
