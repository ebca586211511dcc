"""The musicgpt-server backend: clips from MusicGPT servers over their WebSocket API.

Run without a prompt, the `musicgpt` binary is a web server (UI mode) that keeps one
model loaded and runs requests one at a time from a queue. Its protocol, as the
source defines it (gabotechs/MusicGPT, src/backend/music_gpt_ws_handler.rs and
audio_generation_fanout.rs), is JSON over the WebSocket at `/ws`, enums externally
tagged:

- the client sends ``{"GenerateAudio": {"id", "chat_id", "prompt", "secs"}}`` (ids
  are UUIDs, `secs` an unsigned integer: 8.0 is refused) and
  ``{"AbortGeneration": {"id", "chat_id"}}``;
- on connect the server sends ``{"Info": {"model", "device"}}`` and the chat list
  (``{"Chats": [...]}``); releases before chats sent ``{"Init": {...}}``;
- every job is broadcast to every client: ``{"Generation": {"Start" | "Progress" |
  "Result" | "Error": {...}}}`` with `id` and `chat_id`, `progress` a fraction, the
  result's `relpath` ("audios/<id>.wav", served at HTTP ``GET /files/<relpath>``) and
  the error's `error` ("Aborted" after an abort). Older releases sent the inner
  messages unwrapped. A message it cannot parse is answered ``{"Error": "..."}``
  to the sender only, without any id.

The server loses requests: aborting the running job also drops the job queued behind
it (its queue pops the wrong entry), and an aborted queued job gets no answer. So no
wait here is unbounded: each clip has `generator.timeout` in all, and a server that
sends nothing at all for `silence_limit` seconds while a request waits is given up.

Several servers share the work: each clip goes to the least busy server that answers
(our requests in flight there plus other clients' jobs seen running), a failure sends
it on to the next server, and a failed server rests with a growing pause before it is
chosen again. One connection per server stays open between clips and closes after a
while without requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from infiniloopd.config import GeneratorConfig
from infiniloopd.generators.base import GeneratorError, ProgressFn, check_clip
from infiniloopd.generators.musicgpt import MAX_SECS, MIN_SECS

log = logging.getLogger(__name__)

# The names the server reports in its greeting (src/cli: Model's Display).
MODEL_NAMES = {
    "small": "MusicGen Small",
    "small-fp16": "MusicGen Small Fp16",
    "small-quant": "MusicGen Small Quantized",
    "medium": "MusicGen Medium",
    "medium-fp16": "MusicGen Medium Fp16",
    "medium-quant": "MusicGen Medium Quantized",
    "large": "MusicGen Large",
}
CONNECT_TIMEOUT = 10.0  # TCP, WebSocket handshake and greeting
SILENCE_LIMIT = 120.0  # a running job reports progress many times a second
BACKOFF_BASE = 5.0
BACKOFF_MAX = 300.0
IDLE_CLOSE = 300.0  # an unused connection is closed after this long
SEND_TIMEOUT = 10.0  # for sending a request (a full socket buffer: a stuck server)
ABORT_TIMEOUT = 2.0  # for sending AbortGeneration; its answer is never awaited
FOREIGN_STALE = 60.0  # another client's job not heard of for this long is over
MAX_CLIP_BYTES = 64 * 1024 * 1024  # 30 s of 32 kHz float is 4 MB
MAX_MESSAGE = 16 * 1024 * 1024  # the chat list in the greeting grows with the server's use


class ServerFailure(Exception):
    """This server did not deliver this clip; another server may."""


class _Silence(ServerFailure):
    """The server said nothing at all for too long while a request of ours waited."""


class _SharedFailure(ServerFailure):
    """A connection attempt another clip made and already counted as a failure."""


def _who(url: str) -> str:
    return f"musicgpt-server {url}"


def files_url(ws_url: str, relpath: str) -> str:
    """The HTTP URL of a result's `relpath`: `/files/` next to the server's `/ws`."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    base = parts.path.rsplit("/", 1)[0] if parts.path.endswith("/ws") else parts.path.rstrip("/")
    segments = relpath.split("/")
    if relpath.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise ServerFailure(f"result path {relpath!r} is not a plain relative path")
    path = f"{base}/files/" + "/".join(quote(s, safe="") for s in segments)
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _download(url: str, dest: Path, cancel: threading.Event, timeout: float) -> int:
    """GET `url` into `dest` (through a .part file); blocking, for a worker thread."""
    # Proxies from the environment are not used: the server is reached directly (a
    # private network or an SSH tunnel), as the WebSocket is.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"User-Agent": "infiniloop"})
    part = dest.with_name(dest.name + ".part")
    size = 0
    try:
        with opener.open(request, timeout=timeout) as resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_CLIP_BYTES:
                raise ServerFailure(f"GET {url}: {declared} bytes is too large for a clip")
            with part.open("wb") as fh:
                while chunk := resp.read(65536):
                    if cancel.is_set():
                        raise ServerFailure(f"GET {url}: cancelled")
                    size += len(chunk)
                    if size > MAX_CLIP_BYTES:
                        raise ServerFailure(f"GET {url}: more than {MAX_CLIP_BYTES} bytes")
                    fh.write(chunk)
            if declared and declared.isdigit() and int(declared) != size:
                raise ServerFailure(f"GET {url}: got {size} of {declared} bytes")
        part.replace(dest)
    except urllib.error.HTTPError as exc:
        raise ServerFailure(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ServerFailure(f"GET {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed response
        raise ServerFailure(f"GET {url}: {exc or type(exc).__name__}") from None
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    return size


@dataclass
class _Request:
    """One GenerateAudio of ours in flight on a connection."""

    id: str
    chat_id: str
    progress: ProgressFn
    done: asyncio.Future[str]  # the result's relpath, or ServerFailure
    sent_at: float
    started_at: float | None = None


@dataclass
class _Server:
    """One MusicGPT server: its connection, the requests on it, what we know of it."""

    url: str
    conn: Any = None  # a websockets ClientConnection while connected
    protocol: str = ""  # "Info" (current) or "Init" (older releases)
    model: str | None = None
    device: str | None = None
    requests: dict[str, _Request] = field(default_factory=dict)
    foreign: dict[str, float] = field(default_factory=dict)  # others' jobs: last heard
    last_heard: float = 0.0  # the last message of any kind
    last_used: float = 0.0
    sent: int = 0
    ok: int = 0
    failures: int = 0
    consecutive: int = 0
    retry_at: float = 0.0
    gen_seconds: float = 0.0  # summed over successful clips
    audio_seconds: float = 0.0
    last_error: str | None = None
    connecting: asyncio.Future[None] | None = None
    reader: asyncio.Task[None] | None = None

    def load(self) -> int:
        """Jobs ahead of a new one: ours in flight and others' seen running."""
        now = time.monotonic()
        for job, heard in list(self.foreign.items()):
            if now - heard > FOREIGN_STALE:
                del self.foreign[job]
        return len(self.requests) + len(self.foreign)

    def mean_seconds(self) -> float | None:
        return self.gen_seconds / self.ok if self.ok else None

    def failed(self, message: str) -> None:
        self.failures += 1
        self.consecutive += 1
        self.last_error = message
        pause = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self.consecutive - 1))
        self.retry_at = time.monotonic() + pause
        log.warning("%s: %s (not used for %g s)", _who(self.url), message, pause)

    def succeeded(self, gen_seconds: float, audio_seconds: float) -> None:
        self.ok += 1
        self.consecutive = 0
        self.retry_at = 0.0
        self.gen_seconds += gen_seconds
        self.audio_seconds += audio_seconds

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        mean = self.mean_seconds()
        return {
            "url": self.url,
            "connected": self.conn is not None,
            "model": self.model,
            "device": self.device,
            "busy": self.load(),
            "sent": self.sent,
            "ok": self.ok,
            "failures": self.failures,
            "mean_seconds": round(mean, 2) if mean is not None else None,
            "realtime_factor": (
                round(self.gen_seconds / self.audio_seconds, 3) if self.audio_seconds else None
            ),
            "last_error": self.last_error,
            "retry_in": round(self.retry_at - now, 1) if self.retry_at > now else None,
        }


def _chat_id() -> str:
    # One chat per machine and user, the same across restarts: the server's web page
    # then shows this daemon's clips together instead of a chat per clip.
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"infiniloop://{socket.gethostname()}/{user}"))


class MusicGPTServerGenerator:
    """Generates clips on one or more MusicGPT servers."""

    name = "musicgpt-server"

    def __init__(self, cfg: GeneratorConfig) -> None:
        if not cfg.servers:
            raise GeneratorError(
                "generator.servers: expected a list of MusicGPT server URLs, e.g. "
                '["ws://gpu-box:8642/ws"], got none'
            )
        self.cfg = cfg
        self.phase = "idle"
        self.silence_limit = SILENCE_LIMIT
        self.connect_timeout = CONNECT_TIMEOUT
        self.chat_id = _chat_id()
        self._servers = [_Server(url) for url in cfg.servers]
        self._last_model: str | None = None
        self._background: set[asyncio.Task[None]] = set()

    # --- what status shows ---------------------------------------------------------------

    @property
    def model(self) -> str:
        """The model of the server that made the last clip (else any server's, else config)."""
        if self._last_model:
            return self._last_model
        known = [s.model for s in self._servers if s.model]
        return known[0] if known else MODEL_NAMES.get(self.cfg.model, self.cfg.model)

    @property
    def servers(self) -> list[dict[str, Any]]:
        """Each server as status -v shows it."""
        return [s.status() for s in self._servers]

    # --- one clip ------------------------------------------------------------------------

    async def generate(
        self, prompt: str, seconds: float, out: Path, progress: ProgressFn, *, seed: int
    ) -> Path:
        # The server has no seed: its sampling differs on every request anyway.
        del seed
        if not prompt.strip():
            raise GeneratorError("musicgpt-server: the prompt is empty")
        secs = round(seconds)
        if not MIN_SECS <= secs <= MAX_SECS:
            raise GeneratorError(
                f"musicgpt-server: seconds must be between {MIN_SECS} and {MAX_SECS}, "
                f"got {seconds:g}"
            )
        deadline = time.monotonic() + self.cfg.timeout
        tried: set[str] = set()
        errors: list[str] = []
        while True:
            server = await self._choose(tried, deadline, errors)
            if server is None:
                break
            tried.add(server.url)
            try:
                return await self._attempt(server, prompt, secs, out, progress, deadline)
            except ServerFailure as exc:
                server.failed(str(exc))
                errors.append(f"{server.url}: {exc}")
            finally:
                self.phase = "idle"
        if not errors:
            raise GeneratorError(
                f"musicgpt-server: no server answered within {self.cfg.timeout:g} s "
                "(generator.timeout)"
            )
        raise GeneratorError("musicgpt-server: " + "; ".join(errors))

    async def _choose(self, tried: set[str], deadline: float, errors: list[str]) -> _Server | None:
        """The least busy untried server that answers, or None when none is left."""
        while True:
            now = time.monotonic()
            fresh = [s for s in self._servers if s.url not in tried]
            if not fresh or now >= deadline:
                return None
            rested = [s for s in fresh if s.retry_at <= now]
            if not rested:
                # All are resting after failures: the caller's retry is the time to try
                # again, with the one whose rest ends first.
                rested = [min(fresh, key=lambda s: s.retry_at)]
            closed = [s for s in rested if s.conn is None]
            if closed:
                budget = min(self.connect_timeout, deadline - now)
                results = await asyncio.gather(
                    *(self._connect(s, budget) for s in closed), return_exceptions=True
                )
                for s, res in zip(closed, results, strict=True):
                    if isinstance(res, ServerFailure):
                        if not isinstance(res, _SharedFailure):
                            s.failed(str(res))
                        errors.append(f"{s.url}: {res}")
                        tried.add(s.url)
                    elif isinstance(res, BaseException):
                        raise res
            usable = [s for s in rested if s.conn is not None and s.url not in tried]
            if usable:
                # No await between choosing and registering the request, so concurrent
                # clips see each other's load.
                order = {s.url: i for i, s in enumerate(self._servers)}
                return min(
                    usable,
                    key=lambda s: (s.load(), s.mean_seconds() or 0.0, s.sent, order[s.url]),
                )

    async def _connect(self, server: _Server, timeout: float) -> None:
        """Open the connection and read the greeting; shared by concurrent callers."""
        if server.connecting is not None:
            try:
                await asyncio.shield(server.connecting)
            except ServerFailure as exc:
                raise _SharedFailure(str(exc)) from None
            return
        loop = asyncio.get_running_loop()
        server.connecting = loop.create_future()
        try:
            await asyncio.wait_for(self._open(server), timeout)
        except TimeoutError:
            failure = ServerFailure(f"no answer within {timeout:g} s of connecting")
            server.connecting.set_exception(failure)
            raise failure from None
        except ServerFailure as exc:
            server.connecting.set_exception(exc)
            raise
        except BaseException as exc:
            server.connecting.set_exception(ServerFailure(f"connecting failed: {exc!r}"))
            raise
        else:
            server.connecting.set_result(None)
        finally:
            # Nobody else may be waiting: do not let an unread exception be logged.
            if server.connecting.done() and not server.connecting.cancelled():
                server.connecting.exception()
            server.connecting = None

    async def _open(self, server: _Server) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

        try:
            conn = await connect(
                server.url,
                open_timeout=None,  # the caller's wait_for bounds it
                max_size=MAX_MESSAGE,
                proxy=None,
                user_agent_header="infiniloop",
            )
        except InvalidURI as exc:
            raise ServerFailure(f"not a WebSocket URL: {exc}") from None
        except InvalidHandshake as exc:
            raise ServerFailure(f"refused the WebSocket: {exc}") from None
        except (OSError, WebSocketException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ServerFailure(f"cannot connect: {reason}") from None
        try:
            greeting = None
            while greeting is None:
                raw = await conn.recv()
                greeting = self._greeting(raw)
        except BaseException as exc:
            # No closing handshake with a server that failed us: it may never answer.
            conn.transport.abort()
            if isinstance(exc, WebSocketException):
                raise ServerFailure(f"closed before its greeting: {exc}") from None
            raise
        before = (server.model, server.device)
        server.protocol, server.model, server.device = greeting
        server.conn = conn
        server.last_heard = server.last_used = time.monotonic()
        server.foreign.clear()
        # Said once per server (and when it changes), not at every reconnection.
        level = logging.DEBUG if before == (server.model, server.device) else logging.INFO
        log.log(level, "%s: connected (%s on %s)", _who(server.url), server.model, server.device)
        wanted = MODEL_NAMES.get(self.cfg.model)
        if level == logging.INFO and wanted and wanted.lower() != server.model.lower():
            log.info(
                "%s runs %s (generator.model %s is chosen on the server: musicgpt --model)",
                _who(server.url),
                server.model,
                self.cfg.model,
            )
        server.reader = asyncio.create_task(self._read(server, conn), name="musicgpt-server")

    @staticmethod
    def _greeting(raw: Any) -> tuple[str, str, str] | None:
        try:
            msg = json.loads(raw)
        except (TypeError, ValueError):
            raise ServerFailure("not a MusicGPT server (a non-JSON greeting)") from None
        if not isinstance(msg, dict) or len(msg) != 1:
            raise ServerFailure("not a MusicGPT server (an unexpected greeting)")
        ((kind, body),) = msg.items()
        if kind in ("Info", "Init") and isinstance(body, dict):
            return kind, str(body.get("model") or "?"), str(body.get("device") or "?")
        if kind in ("Chats", "Generation"):
            return None  # broadcasts may be queued ahead of it; keep reading
        raise ServerFailure(f"not a MusicGPT server (greeting {kind!r})")

    async def _read(self, server: _Server, conn: Any) -> None:
        """Dispatch the server's messages until the connection ends; then fail what waits."""
        from websockets.exceptions import ConnectionClosed

        reason = "connection closed"
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(conn.recv(), 10.0)
                except TimeoutError:
                    raw = None
                if raw is not None:
                    server.last_heard = time.monotonic()
                    self._dispatch(server, raw)
                idle = time.monotonic() - server.last_used
                if not server.requests and idle > IDLE_CLOSE:
                    reason = "closed after being idle"
                    server.conn = None  # chosen by no new clip while it closes
                    await conn.close()
                    return
        except ConnectionClosed as exc:
            reason = f"disconnected ({exc})"
        except asyncio.CancelledError:
            reason = "cancelled"
            with contextlib.suppress(Exception):
                conn.transport.abort()
            raise
        finally:
            if server.conn is conn:
                server.conn = None
            if server.conn is None:
                server.foreign.clear()  # a new connection hears the jobs afresh
            for req in list(server.requests.values()):
                if not req.done.done():
                    req.done.set_exception(ServerFailure(reason))
            log.debug("%s: %s", _who(server.url), reason)

    def _dispatch(self, server: _Server, raw: Any) -> None:
        try:
            msg = json.loads(raw)
        except (TypeError, ValueError):
            log.debug("%s: ignoring a non-JSON message", _who(server.url))
            return
        if not isinstance(msg, dict) or len(msg) != 1:
            return
        ((kind, body),) = msg.items()
        if kind == "Generation" and isinstance(body, dict) and len(body) == 1:
            ((event, data),) = body.items()
            self._generation(server, event, data)
        elif kind in ("Start", "Progress", "Result") or (
            kind == "Error" and isinstance(body, dict)
        ):
            self._generation(server, kind, body)  # releases before the Generation wrapper
        elif kind == "Error":
            # The answer to a message of ours it could not take; it names no request, so
            # it is the oldest one not started.
            waiting = [r for r in server.requests.values() if r.started_at is None]
            if waiting and not waiting[0].done.done():
                waiting[0].done.set_exception(ServerFailure(f"refused the request: {body}"))
            else:
                log.warning("%s: server error: %s", _who(server.url), body)

    def _generation(self, server: _Server, event: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        job, chat = data.get("id"), data.get("chat_id")
        req = server.requests.get(job) if isinstance(job, str) else None
        now = time.monotonic()
        if req is None or req.chat_id != chat:
            # Another client's job (every client hears every job): only its load counts.
            if isinstance(job, str):
                if event in ("Start", "Progress"):
                    server.foreign[job] = now
                else:
                    server.foreign.pop(job, None)
            return
        if req.done.done():
            return
        if event == "Start":
            req.started_at = now
            self.phase = "generating"
            req.progress(0.0)
        elif event == "Progress":
            if req.started_at is None:
                req.started_at = now
            value = data.get("progress")
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.phase = "generating"
                req.progress(min(1.0, max(0.0, float(value))))
        elif event == "Result":
            relpath = data.get("relpath")
            if isinstance(relpath, str) and relpath:
                req.done.set_result(relpath)
            else:
                req.done.set_exception(ServerFailure("a result without a relpath"))
        elif event == "Error":
            req.done.set_exception(ServerFailure(f"generation failed: {data.get('error')}"))

    async def _attempt(
        self,
        server: _Server,
        prompt: str,
        secs: int,
        out: Path,
        progress: ProgressFn,
        deadline: float,
    ) -> Path:
        """One request on one server: send, wait for its result, fetch and check the clip."""
        conn = server.conn
        job = str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        req = _Request(job, self.chat_id, progress, loop.create_future(), time.monotonic())
        server.requests[job] = req
        server.sent += 1
        server.last_used = time.monotonic()
        message = {"GenerateAudio": {"id": job, "chat_id": self.chat_id, "prompt": prompt}}
        message["GenerateAudio"]["secs"] = secs  # an integer: the server refuses 8.0
        try:
            self.phase = "queued on server"
            progress(0.0)
            try:
                await asyncio.wait_for(conn.send(json.dumps(message)), SEND_TIMEOUT)
            except Exception as exc:  # closed under us, or a send that never completes
                raise ServerFailure(f"sending the request failed: {exc!r}") from None
            relpath = await self._wait(server, req, deadline)
        except asyncio.CancelledError:
            # A prompt change: tell the server, but never wait for its answer.
            self._abort(server, conn, req)
            raise
        except ServerFailure as exc:
            if not req.done.done() and (task := self._abort(server, conn, req)):
                # Our own time limit, not the server's answer: the job may still run.
                # Not cancelled, so the (bounded) send can be awaited here.
                await task
            if isinstance(exc, _Silence) and server.conn is conn:
                # A server whose broadcast fell behind stops sending to that client for
                # good, with the socket still open: the next clip gets a new connection.
                server.conn = None
                conn.transport.abort()
            raise
        finally:
            server.requests.pop(job, None)
            server.last_used = time.monotonic()
            if not req.done.done():
                req.done.cancel()
            elif not req.done.cancelled():
                req.done.exception()  # retrieved: no "never retrieved" warning
        gen_seconds = time.monotonic() - (req.started_at or req.sent_at)
        url = files_url(server.url, relpath)
        self.phase = "fetching clip"
        cancel = threading.Event()
        try:
            remaining = max(1.0, deadline - time.monotonic())
            await asyncio.wait_for(
                asyncio.to_thread(_download, url, out, cancel, remaining), remaining
            )
        except TimeoutError:
            raise ServerFailure(f"GET {url}: no complete answer in time") from None
        finally:
            cancel.set()
        try:
            facts = await check_clip(out, float(secs), _who(server.url))  # off the loop
        except GeneratorError as exc:
            raise ServerFailure(str(exc).removeprefix(_who(server.url) + ": ")) from None
        server.succeeded(gen_seconds, facts.seconds)
        self._last_model = server.model
        progress(1.0)
        log.debug(
            "%s: %s (%.1f s of audio) generated in %.1f s",
            _who(server.url),
            relpath,
            facts.seconds,
            gen_seconds,
        )
        return out

    async def _wait(self, server: _Server, req: _Request, deadline: float) -> str:
        """The result's relpath; ServerFailure on an error, a lost connection or silence."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise ServerFailure(f"no result after {self.cfg.timeout:g} s (generator.timeout)")
            silent = now - max(server.last_heard, req.sent_at)
            if silent >= self.silence_limit:
                raise _Silence(f"silent for {silent:.0f} s while a request waited")
            wait = min(deadline - now, self.silence_limit - silent, 5.0)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(req.done), wait)

    def _abort(self, server: _Server, conn: Any, req: _Request) -> asyncio.Task[None] | None:
        """Send AbortGeneration in a task, bounded; nothing waits for the server's answer."""
        if conn is None or server.conn is not conn:
            return None
        text = json.dumps({"AbortGeneration": {"id": req.id, "chat_id": req.chat_id}})

        async def send() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.send(text), ABORT_TIMEOUT)
                log.info("%s: aborted request %s", _who(server.url), req.id)

        task = asyncio.get_running_loop().create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
