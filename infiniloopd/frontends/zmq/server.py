"""The control socket server: a ZeroMQ request socket with a command table, and an event socket.

Requests arrive on a ROUTER socket, which speaks the REQ/REP protocol to `infiniloopctl`
(a REQ socket) but lets a slow command (`save` writes a file) finish in the background
while other requests keep being answered. Every request is validated against the
command's declared arguments; anything wrong gets an error reply with a code, never an
exception that stops the server. Handlers run on the event loop and must be quick; a
handler that has to wait returns an awaitable and replies when it is done.

Events go out on a PUB socket with a sequence number; the last ones are kept so a
subscriber that sees a gap can fetch what it missed (`events` command).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from infiniloopd import protocol
from infiniloopd.errors import UserError
from infiniloopd.frontends.zmq.commands import Arg, validate, wire_code
from infiniloopd.protocol import ProtocolError
from infiniloopd.text import printable

log = logging.getLogger(__name__)

__all__ = ["Arg", "Command", "ControlServer", "validate"]

# How long replies already queued may take to leave when the server closes (ms).
REPLY_LINGER_MS = 500
# How long a connection may take to complete the ZMTP (and CURVE) handshake (ms).
HANDSHAKE_MS = 5000

Result = dict[str, Any]
Handler = Callable[[dict[str, Any]], "Result | Awaitable[Result]"]


@dataclass(frozen=True)
class Command:
    """A row of the command table with the daemon's handler for it."""

    name: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    help: str = ""


@dataclass
class _Pending:
    tasks: set[asyncio.Task] = field(default_factory=set)


class ControlServer:
    """Serves the command table on `endpoints.control` and publishes on `endpoints.events`."""

    def __init__(
        self,
        endpoints: protocol.Endpoints,
        commands: dict[str, Command],
        *,
        curve_secret: bytes | None = None,
        curve_allowed: frozenset[bytes] | None = None,
        handshake_ms: int = HANDSHAKE_MS,
        keep_events: int = 1000,
    ) -> None:
        self.endpoints = endpoints
        self.commands = commands
        self._curve_secret = curve_secret
        # Z85 client public keys let in over tcp:// (ZAP); None or empty: nobody.
        self._curve_allowed = curve_allowed or frozenset()
        self._handshake_ms = handshake_ms
        self._auth: Any = None
        self._ctx = zmq.asyncio.Context()
        # PUB sends never block (they drop at the high-water mark), so a plain socket
        # on the same context is simplest for publishing from synchronous code.
        self._sync_ctx = zmq.Context(shadow=self._ctx.underlying)
        self._rep: zmq.asyncio.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._seq = 0
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep_events)
        self._pending = _Pending()
        self._closed = False
        self.requests = 0
        self.errors = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    # --- sockets --------------------------------------------------------------------

    def _secure(self, sock: zmq.Socket, endpoint: str) -> None:
        # A peer that connects and never completes the ZMTP handshake is dropped, so
        # idle connections cannot pile up until the daemon runs out of descriptors.
        sock.setsockopt(zmq.HANDSHAKE_IVL, self._handshake_ms)
        if not endpoint.startswith("tcp://"):
            return
        if self._curve_secret is None:
            raise UserError(f"{endpoint}: a tcp:// endpoint needs control.curve_secret_key_file")
        self._start_auth()
        sock.curve_secretkey = self._curve_secret
        sock.curve_publickey = zmq.curve_public(self._curve_secret)
        sock.curve_server = True

    def _start_auth(self) -> None:
        """ZAP on this context: a CURVE client gets in only with an allow-listed key."""
        if self._auth is not None:
            return
        from zmq.auth.asyncio import AsyncioAuthenticator

        if not self._curve_allowed:
            log.warning("control: the CURVE allow-list is empty; no remote client can connect")
        self._auth = AsyncioAuthenticator(self._ctx, log=logging.getLogger(__name__ + ".zap"))
        self._auth.start()
        self._auth.configure_curve_callback("*", _AllowList(self._curve_allowed))

    def _bind(self, sock: zmq.Socket, endpoint: str) -> None:
        path = protocol.ipc_path(endpoint)
        if path is not None:
            # We hold the daemon lock, so a socket left here is stale; anything else at
            # that path is not ours to delete.
            try:
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    raise UserError(f"{path}: exists and is not a socket; not removing it")
                path.unlink()
            except FileNotFoundError:
                pass
        old_umask = os.umask(0o077)  # the socket file is born 0600, no window
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise UserError(f"{endpoint}: cannot bind the control socket: {exc}") from None
        finally:
            os.umask(old_umask)
        if path is not None:
            os.chmod(path, 0o600)

    def start(self) -> None:
        """Bind both sockets; raises UserError when an endpoint cannot be used."""
        rep = self._ctx.socket(zmq.ROUTER)
        rep.setsockopt(zmq.LINGER, 0)
        rep.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        rep.setsockopt(zmq.RCVHWM, 1000)
        # A reply to a peer that has gone away is dropped instead of raising.
        rep.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self._secure(rep, self.endpoints.control)
        pub = self._sync_ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 10000)
        pub.setsockopt(zmq.MAXMSGSIZE, 1024)  # subscribers have nothing to say
        self._secure(pub, self.endpoints.events)
        try:
            self._bind(rep, self.endpoints.control)
            self._bind(pub, self.endpoints.events)
        except BaseException:
            rep.close(0)
            pub.close(0)
            raise
        self._rep, self._pub = rep, pub
        log.info("control socket %s, events %s", self.endpoints.control, self.endpoints.events)

    async def drain(self, timeout: float = 5.0) -> None:
        """Let commands in progress (a `save` writing its file) finish and reply.

        At shutdown, before close(): what does not finish within `timeout` is cancelled
        and its client told so; either way every client gets an answer.
        """
        pending = list(self._pending.tasks)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def close(self) -> None:
        """Close the sockets and remove their files."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._pending.tasks):
            task.cancel()
        if self._rep is not None:
            # A moment for the last replies (drain()'s) to leave; then gone.
            self._rep.close(linger=REPLY_LINGER_MS)
        if self._pub is not None:
            self._pub.close(0)
        if self._auth is not None:
            self._auth.stop()
        for path in (self.endpoints.control_path, self.endpoints.events_path):
            if path is not None and self._rep is not None:
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(path.lstat().st_mode):
                        path.unlink()
        self._ctx.term()

    # --- events ---------------------------------------------------------------------

    def publish(self, name: str, data: dict[str, Any] | None = None) -> int:
        """Announce an event; call from the event loop's thread. Returns its seq."""
        self._seq += 1
        when = time.time()
        event = {"v": protocol.VERSION, "seq": self._seq, "event": name, "data": data or {}}
        event["time"] = when
        self._recent.append(event)
        if self._pub is not None and not self._closed:
            payload = protocol.encode_event(self._seq, name, data or {}, when)
            try:
                self._pub.send_multipart([protocol.EVENT_TOPIC, payload], flags=zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.debug("event %s not published: %s", name, exc)
        return self._seq

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self._recent if e["seq"] > seq]

    # --- requests -------------------------------------------------------------------

    async def serve(self) -> None:
        """Answer requests until the server is closed."""
        assert self._rep is not None, "start() first"
        while not self._closed:
            try:
                frames = await self._rep.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                if self._closed:
                    return
                raise
            self._dispatch(frames)

    def _dispatch(self, frames: list[bytes]) -> None:
        self.requests += 1
        # ROUTER frames: [identity, ..., b"", body...] from REQ peers. A peer that
        # sends no delimiter is not REQ; answer it without one.
        try:
            cut = frames.index(b"", 1) + 1
        except ValueError:
            cut = 1
        envelope, body = frames[:cut], frames[cut:]
        try:
            cmd, raw_args = protocol.decode_request(body)
            command = self.commands.get(cmd)
            if command is None:
                raise ProtocolError(
                    protocol.UNKNOWN_COMMAND,
                    f"unknown command {printable(cmd[:40])!r} (try `help`)",
                )
            args = validate(command, raw_args)
            result = command.handler(args)
        except Exception as exc:  # every failure becomes a reply; the server keeps going
            self._reply(envelope, self._error_reply(frames, exc))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish(envelope, cmd, result))
            self._pending.tasks.add(task)
            task.add_done_callback(self._pending.tasks.discard)
            return
        self._reply(envelope, protocol.encode_ok(result))

    async def _finish(self, envelope: list[bytes], cmd: str, awaitable: Awaitable[Result]) -> None:
        try:
            reply = protocol.encode_ok(await awaitable)
        except asyncio.CancelledError:
            # The client still gets an answer, not a timeout.
            self._reply(
                envelope,
                protocol.encode_error(protocol.FAILED, f"{cmd}: the daemon stopped first"),
            )
            raise
        except Exception as exc:
            reply = self._error_reply([cmd.encode()], exc)
        self._reply(envelope, reply)

    def _error_reply(self, frames: list[bytes], exc: Exception) -> bytes:
        self.errors += 1
        if isinstance(exc, UserError):
            return protocol.encode_error(wire_code(exc), str(exc))
        log.exception("bug while handling a request (%d frames)", len(frames))
        return protocol.encode_error(
            protocol.INTERNAL, f"internal error: {type(exc).__name__}: {exc} (see the daemon log)"
        )

    def _reply(self, envelope: list[bytes], payload: bytes) -> None:
        if self._rep is None or self._closed:
            return
        # Never waits: ROUTER drops a reply it cannot route (peer gone, queue full).
        future = self._rep.send_multipart([*envelope, payload])
        future.add_done_callback(_log_send_failure)


class _AllowList:
    """pyzmq's ZAP credentials provider: is this client's public key listed?"""

    def __init__(self, keys: frozenset[bytes]) -> None:
        self.keys = keys

    def callback(self, _domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            log.warning("control: refused a CURVE client with an unlisted key %s", key.decode())
        return allowed


def _log_send_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("reply dropped: %s", future.exception())
