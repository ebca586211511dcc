"""Today's `Daemon` behind the core Session's interface, for the MPRIS and MPD frontends.

A bridge until the core Session (issue 15, part 1) replaces it: it calls the daemon's
`cmd_*` handlers, turns their wire errors into core errors, and hears every event by
wrapping `Daemon.emit`. Frontends use only the Session interface, never this module.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from infiniloopd import protocol
from infiniloopd.core.errors import CoreError, Exists, Failed, InvalidValue, NotFound, NotReady
from infiniloopd.protocol import ProtocolError

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[CoreError]] = {
    protocol.BAD_ARGUMENT: InvalidValue,
    protocol.NOT_READY: NotReady,
    protocol.NOT_FOUND: NotFound,
    protocol.EXISTS: Exists,
}


@dataclass
class NextResult:
    """What `next` did: switched now, or waits for a loop (`pending`, with a message)."""

    pending: bool
    message: str = ""


def _core_error(exc: ProtocolError) -> CoreError:
    return _ERRORS.get(exc.code, Failed)(str(exc))


class DaemonSession:
    """The Session interface over a running `Daemon` (main thread only)."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self._listeners: list[Any] = []
        emit = daemon.emit

        def emit_and_tell(name: str, data: dict[str, Any] | None = None) -> None:
            emit(name, data)
            self._tell(name, dict(data or {}))

        # An instance attribute: every `self.emit` in the daemon, and the producer built
        # after this, go through it.
        daemon.emit = emit_and_tell

    # --- events -------------------------------------------------------------------------

    def add_listener(self, listener: Any) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _tell(self, name: str, data: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_event(name, dict(data))
            except Exception:
                log.exception("event listener %r failed on %s", listener, name)

    # --- state --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {**self.daemon.cmd_status({}), "sleep": None}

    def ready_loops(self) -> list[dict[str, Any]]:
        return [
            {"id": e.id, "prompt": e.prompt, "bpm": e.bpm, "seconds": e.seconds}
            for e in self.daemon.producer.ready()
        ]

    # --- actions ------------------------------------------------------------------------

    def _call(self, handler: Any, args: dict[str, Any]) -> Any:
        try:
            return handler(args)
        except ProtocolError as exc:
            raise _core_error(exc) from None

    def play(self) -> None:
        self._call(self.daemon.cmd_play, {})

    def pause(self) -> None:
        self._call(self.daemon.cmd_pause, {})

    def stop(self) -> None:
        self._call(self.daemon.cmd_stop, {})

    def toggle(self) -> None:
        self._call(self.daemon.cmd_toggle, {})

    async def next(self) -> NextResult:
        try:
            reply = await self.daemon.cmd_next({})
        except ProtocolError as exc:
            raise _core_error(exc) from None
        return NextResult(bool(reply.get("pending")), str(reply.get("message", "")))

    def set_volume(self, percent: float) -> None:
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise InvalidValue(f"volume: expected a number between 0 and 100, got {percent!r}")
        if math.isnan(percent):
            raise InvalidValue("volume: expected a number between 0 and 100, got NaN")
        self._call(self.daemon.cmd_volume, {"value": min(100.0, max(0.0, float(percent)))})

    def set_crossfade(self, seconds: float) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds <= 60
        ):
            raise InvalidValue(f"crossfade: expected seconds between 0 and 60, got {seconds!r}")
        self._call(self.daemon.cmd_crossfade, {"seconds": float(seconds)})

    def set_prompt(self, text: str) -> None:
        self._call(self.daemon.cmd_prompt, {"text": text, "keep": False})

    def apply_preset(self, name: str) -> None:
        self._call(self.daemon.cmd_preset, {"name": name})
