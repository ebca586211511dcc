"""The MPD protocol, so mpc, ncmpcpp and phone apps can show and steer infiniloop.

A line-based TCP server (asyncio streams). The "playlist" is the loop playing (position
0) followed by the ready queue; `next` crossfades to the next loop, `previous` is an
error (an endless stream only goes forwards). Errors are MPD's
`ACK [code@index] {command} message` lines. `idle` waits on session events. A client
that stops reading is dropped once its replies pile up or stay unread too long; it never
holds up the session or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from infiniloopd.config import listen_address
from infiniloopd.core.errors import CoreError, InvalidValue, NotFound, NotReady

log = logging.getLogger(__name__)

GREETING = b"OK MPD 0.23.0\n"
MAX_LINE = 8192  # MPD's own request line limit is of this order
MAX_LIST = 1000  # commands in one command list
MAX_CLIENTS = 100  # MPD's default max_connections
MAX_BUFFER = 1 << 20  # unread reply bytes before a client is dropped
WRITE_TIMEOUT = 10.0  # seconds a reply may wait unread before the client is dropped

# MPD's ACK error codes (src/protocol/Ack.hxx).
ACK_ARG = 2
ACK_PASSWORD = 3
ACK_PERMISSION = 4
ACK_UNKNOWN = 5
ACK_NO_EXIST = 50
ACK_SYSTEM = 52
ACK_PLAYER_SYNC = 55

SUBSYSTEMS = (
    "database",
    "update",
    "stored_playlist",
    "playlist",
    "player",
    "mixer",
    "output",
    "options",
    "partition",
    "sticker",
    "subscription",
    "message",
    "neighbor",
    "mount",
)
EVENT_SUBSYSTEMS: dict[str, tuple[str, ...]] = {
    "state": ("player",),
    "loop_started": ("player", "playlist"),
    "crossfade_done": ("player",),
    "skip_pending": ("player",),
    "volume": ("mixer",),
    "option": ("options",),
    "sleep": ("options",),
    "prompt": ("playlist",),
    "loop_ready": ("playlist",),
}
# The play modes an endless stream has: never random, repeat or single; always consume
# (a loop leaves the queue once it has played).
MODES = {"random": "0", "repeat": "0", "single": "0", "consume": "1"}
MPD_STATE = {"playing": "play", "paused": "pause", "stopped": "stop"}
TAG_TYPES = ("Artist", "Album", "Title", "Comment")
# Allowed before `password` when a password is set (MPD's "read"-less default).
OPEN_COMMANDS = {"close", "commands", "notcommands", "password", "ping", "tagtypes"}


class MpdError(Exception):
    """An ACK reply: MPD error code and one-line message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class CloseConnection(Exception):
    """The client asked to close, or broke the protocol so that MPD would hang up."""


def split_args(line: str) -> list[str]:
    """MPD's request syntax: words separated by blanks, or "quoted" with \\ escapes."""
    args: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        if line[i] == '"':
            i += 1
            word: list[str] = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                word.append(line[i])
                i += 1
            if i >= n:
                raise MpdError(ACK_ARG, "Missing closing '\"'")
            i += 1
            if i < n and line[i] not in " \t":
                raise MpdError(ACK_ARG, "Space expected after closing '\"'")
            args.append("".join(word))
        else:
            start = i
            while i < n and line[i] not in " \t":
                i += 1
            args.append(line[start:i])
    return args


def _int(text: str, what: str = "Integer expected") -> int:
    try:
        return int(text)
    except ValueError:
        raise MpdError(ACK_ARG, f"{what}: {text}") from None


def ack_code(exc: CoreError) -> int:
    """The MPD error code closest to a core error."""
    if isinstance(exc, InvalidValue):
        return ACK_ARG
    if isinstance(exc, NotFound):
        return ACK_NO_EXIST
    if isinstance(exc, NotReady):
        return ACK_PLAYER_SYNC
    return ACK_SYSTEM


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


Reply = list[tuple[str, Any]]


class MpdFrontend:
    """The TCP server; one `_Client` per connection; session events wake idling clients."""

    def __init__(self, session: Any, config: Any) -> None:
        self.session = session
        self.listen: str = config.listen
        self.password: str | None = config.password
        self.server: asyncio.Server | None = None
        self.clients: set[_Client] = set()
        self.playlist_version = 1
        self._song_ids: dict[str, int] = {}
        self._next_song_id = 1
        self.commands: dict[str, Callable[[_Client, list[str]], Any]] = {
            "close": _Client.cmd_close,
            "consume": functools.partial(_Client.cmd_mode, mode="consume"),
            "commands": _Client.cmd_commands,
            "crossfade": _Client.cmd_crossfade,
            "currentsong": _Client.cmd_currentsong,
            "decoders": _Client.cmd_empty,
            "getvol": _Client.cmd_getvol,
            "idle": _Client.cmd_idle,
            "listplaylists": _Client.cmd_empty,
            "lsinfo": _Client.cmd_lsinfo,
            "next": _Client.cmd_next,
            "noidle": _Client.cmd_noidle,
            "notcommands": _Client.cmd_notcommands,
            "outputs": _Client.cmd_outputs,
            "password": _Client.cmd_password,
            "pause": _Client.cmd_pause,
            "ping": _Client.cmd_empty,
            "play": _Client.cmd_play,
            "playid": _Client.cmd_play,
            "playlistid": _Client.cmd_playlistid,
            "playlistinfo": _Client.cmd_playlistinfo,
            "plchanges": _Client.cmd_plchanges,
            "previous": _Client.cmd_previous,
            "random": functools.partial(_Client.cmd_mode, mode="random"),
            "repeat": functools.partial(_Client.cmd_mode, mode="repeat"),
            "replay_gain_status": _Client.cmd_replay_gain_status,
            "setvol": _Client.cmd_setvol,
            "single": functools.partial(_Client.cmd_mode, mode="single"),
            "stats": _Client.cmd_stats,
            "status": _Client.cmd_status,
            "stop": _Client.cmd_stop,
            "tagtypes": _Client.cmd_tagtypes,
            "urlhandlers": _Client.cmd_empty,
            "volume": _Client.cmd_volume,
        }

    async def start(self) -> None:
        host, port = listen_address(self.listen)
        try:
            self.server = await asyncio.start_server(
                self._serve, host, port, limit=MAX_LINE, reuse_address=True
            )
        except OSError as exc:
            log.warning("mpd: cannot listen on %s (%s); MPD clients are off", self.listen, exc)
            return
        self.session.add_listener(self)
        log.info("mpd: listening on %s", self.listen)
        if self.password is None and not _loopback(host):
            log.warning(
                "mpd: %s is reachable from other machines and mpd.password is null: "
                "anyone there can control playback",
                self.listen,
            )

    async def close(self) -> None:
        self.session.remove_listener(self)
        if self.server is None:
            return
        self.server.close()
        for client in list(self.clients):
            client.drop()
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.clients) >= MAX_CLIENTS:
            writer.write(b"ACK [52@0] {} too many connections\n")
            writer.close()
            return
        client = _Client(self, reader, writer)
        self.clients.add(client)
        try:
            await client.run()
        except Exception:
            log.exception("mpd: a client's request failed")
        finally:
            self.clients.discard(client)
            client.closed = True
            with contextlib.suppress(Exception):
                writer.close()

    # --- events -------------------------------------------------------------------------

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        subsystems = EVENT_SUBSYSTEMS.get(name)
        if not subsystems:
            return
        if "playlist" in subsystems:
            self.playlist_version += 1
        for client in list(self.clients):
            client.changed(subsystems)

    # --- what clients see ---------------------------------------------------------------

    def song_id(self, loop_id: str) -> int:
        """MPD song ids are integers: one per loop id, stable while the loop is around."""
        if loop_id not in self._song_ids:
            if len(self._song_ids) > 1000:  # forget old loops, keep numbers unique
                self._song_ids.clear()
            self._song_ids[loop_id] = self._next_song_id
            self._next_song_id += 1
        return self._song_ids[loop_id]

    def playlist(self, status: dict[str, Any]) -> list[dict[str, Any]]:
        """The loop playing (if any) first, then the ready queue."""
        songs = [status["loop"]] if status.get("loop") else []
        return songs + list(self.session.ready_loops())

    def song(self, loop: dict[str, Any], pos: int, status: dict[str, Any]) -> Reply:
        generator = status.get("generator") or {}
        seconds = _seconds(loop.get("seconds"))
        reply: Reply = [
            ("file", f"infiniloop://loop/{loop.get('id')}"),
            ("Title", loop.get("prompt") or ""),
            ("Artist", generator.get("backend") or "infiniloop"),
            ("Album", "infiniloop"),
        ]
        bpm = _seconds(loop.get("bpm"))
        if bpm:
            reply.append(("Comment", f"{bpm:.0f} BPM"))
        if seconds is not None:
            reply += [("Time", round(seconds)), ("duration", f"{seconds:.3f}")]
        reply += [("Pos", pos), ("Id", self.song_id(str(loop.get("id"))))]
        return reply


class _Client:
    """One connection: reads requests, runs them, writes replies, tracks idle."""

    def __init__(
        self, frontend: MpdFrontend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.frontend = frontend
        self.session = frontend.session
        self.reader = reader
        self.writer = writer
        self.authenticated = frontend.password is None
        self.pending: set[str] = set()  # subsystems changed since last reported
        self.idle: set[str] | None = None  # the subsystems waited for while idling
        self.closed = False

    # --- output -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFER:
            log.info("mpd: dropping a client that does not read its replies")
            self.drop()

    def drop(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.transport.abort()

    @staticmethod
    def render(reply: Reply) -> bytes:
        lines = []
        for key, value in reply:
            text = str(value).replace("\n", " ")
            lines.append(f"{key}: {text}\n")
        return "".join(lines).encode("utf-8", "replace")

    # --- idle ---------------------------------------------------------------------------

    def changed(self, subsystems: tuple[str, ...]) -> None:
        self.pending.update(subsystems)
        if self.idle is not None:
            self._finish_idle()

    def _finish_idle(self, force: bool = False) -> None:
        assert self.idle is not None
        wanted = self.pending & self.idle if self.idle else set(self.pending)
        if not wanted and not force:
            return
        self.pending -= wanted
        self.idle = None
        self.write(self.render([("changed", s) for s in sorted(wanted)]) + b"OK\n")

    # --- the request loop ---------------------------------------------------------------

    async def run(self) -> None:
        self.write(GREETING)
        list_mode: str | None = None  # None, "list" or "list_ok"
        batch: list[list[str]] = []
        while not self.closed:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                self.write(b"ACK [2@0] {} line too long\n")
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if self.idle is not None:
                if line.strip() == "noidle":
                    self._finish_idle(force=True)
                    continue
                return  # MPD hangs up on anything but noidle while idle
            try:
                args = split_args(line)
            except MpdError as exc:
                self.write(f"ACK [{exc.code}@0] {{}} {exc}\n".encode())
                continue
            if not args:
                self.write(b"ACK [5@0] {} No command given\n")
                continue
            name = args[0]
            if list_mode is not None:
                if name == "command_list_end":
                    try:
                        await self._run_list(batch, ok=list_mode == "list_ok")
                    except CloseConnection:
                        return
                    list_mode, batch = None, []
                elif len(batch) >= MAX_LIST:
                    self.write(b"ACK [2@0] {command_list_end} command list too long\n")
                    return
                else:
                    batch.append(args)
                continue
            if name in ("command_list_begin", "command_list_ok_begin"):
                list_mode = "list_ok" if name == "command_list_ok_begin" else "list"
                continue
            try:
                reply = await self.execute(args, 0)
            except CloseConnection:
                return
            if reply is not None:
                self.write(reply if reply.startswith(b"ACK ") else reply + b"OK\n")
            await self._drain()

    async def _run_list(self, batch: list[list[str]], *, ok: bool) -> None:
        out = bytearray()
        for index, args in enumerate(batch):
            reply = await self.execute(args, index)
            if reply is None:  # idle inside a list: MPD does not allow it
                continue
            out += reply
            if reply.startswith(b"ACK "):
                self.write(bytes(out))
                return
            if ok:
                out += b"list_OK\n"
        self.write(bytes(out) + b"OK\n")
        await self._drain()

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            log.info("mpd: dropping a client that does not read its replies")
            self.drop()

    async def execute(self, args: list[str], index: int) -> bytes | None:
        """Run one command: its reply lines (without the final OK), an ACK line, or None
        when the reply comes later (idle)."""
        name = args[0]
        handler = self.frontend.commands.get(name)
        try:
            if handler is None:
                raise MpdError(ACK_UNKNOWN, f'unknown command "{name}"')
            if not self.authenticated and name not in OPEN_COMMANDS:
                raise MpdError(ACK_PERMISSION, f'you don\'t have permission for "{name}"')
            result = handler(self, args[1:])
            if asyncio.iscoroutine(result):
                result = await result
        except MpdError as exc:
            # MPD leaves {} empty for a command it does not know.
            shown = name if handler is not None else ""
            return f"ACK [{exc.code}@{index}] {{{shown}}} {exc}\n".encode()
        except CoreError as exc:
            code = ack_code(exc)
            return f"ACK [{code}@{index}] {{{name}}} {exc}\n".encode()
        except CloseConnection:
            raise
        except Exception:  # a bug: the client gets an error, the connection lives on
            log.exception("mpd: %s failed", name)
            return f"ACK [{ACK_SYSTEM}@{index}] {{{name}}} internal error (see the log)\n".encode()
        if result is None:
            return None
        return self.render(result)

    # --- commands -----------------------------------------------------------------------

    def _args(self, args: list[str], lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            raise MpdError(ACK_ARG, "wrong number of arguments")

    def cmd_empty(self, args: list[str]) -> Reply:
        return []

    def cmd_mode(self, args: list[str], *, mode: str) -> Reply:
        self._args(args, 1, 1)
        if args[0] not in ("0", "1", "oneshot"):
            raise MpdError(ACK_ARG, f"Boolean (0/1) expected: {args[0]}")
        if args[0] != MODES[mode]:
            raise MpdError(ACK_ARG, f"{mode}: an endless stream cannot change it")
        return []

    def cmd_lsinfo(self, args: list[str]) -> Reply:
        self._args(args, 0, 1)
        if args and args[0] not in ("", "/"):
            raise MpdError(ACK_NO_EXIST, "No such directory")
        return []  # no music database: loops come from the generator

    def cmd_replay_gain_status(self, args: list[str]) -> Reply:
        return [("replay_gain_mode", "off")]  # loops are loudness-normalized already

    def cmd_close(self, args: list[str]) -> Reply:
        raise CloseConnection

    def cmd_password(self, args: list[str]) -> Reply:
        self._args(args, 1, 1)
        if args[0] != self.frontend.password:
            raise MpdError(ACK_PASSWORD, "incorrect password")
        self.authenticated = True
        return []

    def _allowed(self) -> list[str]:
        names = sorted(self.frontend.commands)
        return names if self.authenticated else [n for n in names if n in OPEN_COMMANDS]

    def cmd_commands(self, args: list[str]) -> Reply:
        names = self._allowed()
        if self.authenticated:
            names = sorted([*names, "command_list_begin", "command_list_ok_begin"])
        return [("command", n) for n in names]

    def cmd_notcommands(self, args: list[str]) -> Reply:
        allowed = set(self._allowed())
        return [("command", n) for n in sorted(self.frontend.commands) if n not in allowed]

    def cmd_tagtypes(self, args: list[str]) -> Reply:
        if args and args[0] not in ("all", "clear", "enable", "disable"):
            raise MpdError(ACK_ARG, f"Unknown sub command: {args[0]}")
        return [] if args else [("tagtype", t) for t in TAG_TYPES]

    def cmd_idle(self, args: list[str]) -> None:
        wanted = set(args)
        unknown = sorted(wanted - set(SUBSYSTEMS))
        if unknown:
            raise MpdError(ACK_ARG, f"Unrecognized idle event: {unknown[0]}")
        self.idle = wanted
        self._finish_idle()  # changes already waiting answer at once
        return None

    def cmd_noidle(self, args: list[str]) -> None:
        return None  # not idling: nothing to end, and MPD sends no reply

    def cmd_status(self, args: list[str]) -> Reply:
        st = self.session.status()
        playlist = self.frontend.playlist(st)
        state = MPD_STATE.get(st.get("state"), "stop")
        reply: Reply = [
            ("volume", int(st.get("volume", 0))),
            ("repeat", MODES["repeat"]),
            ("random", MODES["random"]),
            ("single", MODES["single"]),
            ("consume", MODES["consume"]),
            ("partition", "default"),
            ("playlist", self.frontend.playlist_version),
            ("playlistlength", len(playlist)),
            ("mixrampdb", "0.000000"),
            ("state", state),
        ]
        loop = st.get("loop")
        if loop:
            reply += [("song", 0), ("songid", self.frontend.song_id(str(loop["id"])))]
            seconds = _seconds(loop.get("seconds")) or 0.0
            position = _seconds(loop.get("position")) or 0.0
            if state != "stop":
                reply += [
                    ("time", f"{int(position)}:{round(seconds)}"),
                    ("elapsed", f"{position:.3f}"),
                    ("bitrate", 0),
                    ("duration", f"{seconds:.3f}"),
                ]
        if len(playlist) > (1 if loop else 0):
            nxt = playlist[1 if loop else 0]
            reply += [
                ("nextsong", 1 if loop else 0),
                ("nextsongid", self.frontend.song_id(str(nxt["id"]))),
            ]
        reply.append(("xfade", round(float(st.get("crossfade", 0)))))
        if st.get("consecutive_failures") and st.get("last_error"):
            reply.append(("error", st["last_error"]))
        return reply

    def cmd_currentsong(self, args: list[str]) -> Reply:
        st = self.session.status()
        loop = st.get("loop")
        return self.frontend.song(loop, 0, st) if loop else []

    def _range(self, args: list[str], length: int) -> range:
        if not args:
            return range(length)
        text = args[0]
        if ":" in text:
            start_text, _, end_text = text.partition(":")
            start = _int(start_text, "Integer expected")
            end = _int(end_text, "Integer expected") if end_text else length
        else:
            start = _int(text, "Integer expected")
            end = start + 1
            if not 0 <= start < length:
                raise MpdError(ACK_ARG, "Bad song index")
        if start < 0 or end < start:
            raise MpdError(ACK_ARG, "Bad song index")
        return range(start, min(end, length))

    def cmd_playlistinfo(self, args: list[str]) -> Reply:
        self._args(args, 0, 1)
        st = self.session.status()
        playlist = self.frontend.playlist(st)
        reply: Reply = []
        for pos in self._range(args, len(playlist)):
            reply += self.frontend.song(playlist[pos], pos, st)
        return reply

    def cmd_playlistid(self, args: list[str]) -> Reply:
        self._args(args, 0, 1)
        st = self.session.status()
        playlist = self.frontend.playlist(st)
        want = _int(args[0]) if args else None
        reply: Reply = []
        for pos, loop in enumerate(playlist):
            if want is None or self.frontend.song_id(str(loop["id"])) == want:
                reply += self.frontend.song(loop, pos, st)
        if want is not None and not reply:
            raise MpdError(ACK_NO_EXIST, "No such song")
        return reply

    def cmd_plchanges(self, args: list[str]) -> Reply:
        self._args(args, 1, 2)
        if _int(args[0]) >= self.frontend.playlist_version:
            return []
        return self.cmd_playlistinfo([])  # the queue is short: all of it is "changed"

    def cmd_stats(self, args: list[str]) -> Reply:
        st = self.session.status()
        library = st.get("library") or {}
        return [
            ("artists", 1),
            ("albums", 1),
            ("songs", int(library.get("loops", 0))),
            ("uptime", int(_seconds(st.get("uptime")) or 0)),
            ("playtime", 0),  # not tracked by the session
            ("db_playtime", 0),
            ("db_update", 0),
        ]

    def cmd_outputs(self, args: list[str]) -> Reply:
        reply: Reply = []
        for i, out in enumerate(self.session.status().get("outputs") or []):
            reply += [
                ("outputid", i),
                ("outputname", out.get("description") or out.get("name") or "output"),
                ("plugin", out.get("name") or "output"),
                ("outputenabled", 1),
            ]
        return reply

    def cmd_play(self, args: list[str]) -> Reply:
        self._args(args, 0, 1)
        if args:
            _int(args[0])  # a position or id: there is only one way to play, forwards
        self.session.play()
        return []

    def cmd_pause(self, args: list[str]) -> Reply:
        self._args(args, 0, 1)
        if not args:
            self.session.toggle()
        elif args[0] == "1":
            self.session.pause()
        elif args[0] == "0":
            self.session.play()
        else:
            raise MpdError(ACK_ARG, f"Boolean (0/1) expected: {args[0]}")
        return []

    def cmd_stop(self, args: list[str]) -> Reply:
        self.session.stop()
        return []

    async def cmd_next(self, args: list[str]) -> Reply:
        result = await self.session.next()
        if result.pending:
            log.info("mpd: %s", result.message)
        return []

    def cmd_previous(self, args: list[str]) -> Reply:
        raise MpdError(ACK_NO_EXIST, "no previous loop: infiniloop only goes forwards")

    def cmd_setvol(self, args: list[str]) -> Reply:
        self._args(args, 1, 1)
        value = _int(args[0])
        if not 0 <= value <= 100:
            raise MpdError(ACK_ARG, "Invalid volume value")
        self.session.set_volume(value)
        return []

    def cmd_volume(self, args: list[str]) -> Reply:
        self._args(args, 1, 1)
        delta = _int(args[0])
        if not -100 <= delta <= 100:
            raise MpdError(ACK_ARG, "Invalid volume value")
        self.session.set_volume(int(self.session.status().get("volume", 0)) + delta)
        return []

    def cmd_getvol(self, args: list[str]) -> Reply:
        return [("volume", int(self.session.status().get("volume", 0)))]

    def cmd_crossfade(self, args: list[str]) -> Reply:
        self._args(args, 1, 1)
        value = _int(args[0])
        if value < 0:
            raise MpdError(ACK_ARG, f"Number expected: {args[0]}")
        self.session.set_crossfade(value)
        return []
