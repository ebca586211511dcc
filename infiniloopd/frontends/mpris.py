"""MPRIS2 on the D-Bus session bus: media keys, desktop media widgets and playerctl.

Exports org.mpris.MediaPlayer2 and org.mpris.MediaPlayer2.Player at
/org/mpris/MediaPlayer2 under the name org.mpris.MediaPlayer2.infiniloop. It only
translates: methods call the core Session, properties are read from `session.status()`,
and every session event re-reads them and signals PropertiesChanged for those that
changed. Without a session bus it logs one warning and the daemon plays on.
"""

# No `from __future__ import annotations` here: dbus-fast reads the D-Bus signatures
# from the annotations when the classes are created.

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any

from dbus_fast import PropertyAccess, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusDouble,
    DBusInt64,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
)
from dbus_fast.constants import NameFlag, RequestNameReply
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_property, method

from infiniloopd.core.errors import CoreError

log = logging.getLogger(__name__)

BUS_NAME = "org.mpris.MediaPlayer2.infiniloop"
OBJECT_PATH = "/org/mpris/MediaPlayer2"
TRACK_PREFIX = "/org/mpris/MediaPlayer2/infiniloop/loop/"
NO_TRACK = "/org/mpris/MediaPlayer2/TrackList/NoTrack"
ERROR_FAILED = "org.mpris.MediaPlayer2.infiniloop.Error.Failed"
StrList = Annotated[list[str], DBusSignature("as")]
VariantMap = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
PLAYBACK_STATUS = {"playing": "Playing", "paused": "Paused", "stopped": "Stopped"}


def track_id(loop_id: str | None) -> str:
    """A valid D-Bus object path for a loop id (path elements allow only [A-Za-z0-9_])."""
    if not loop_id:
        return NO_TRACK
    return TRACK_PREFIX + (re.sub(r"[^A-Za-z0-9_]", "_", str(loop_id)) or "_")


def artist(generator: dict[str, Any]) -> str:
    """What made the music, for xesam:artist: the generator backend (and its model)."""
    backend = str(generator.get("backend") or "infiniloop")
    if backend.startswith("musicgpt") and generator.get("model"):
        return f"{backend} ({generator['model']})"
    return backend


def metadata(status: dict[str, Any]) -> dict[str, Variant]:
    """The MPRIS Metadata map of the loop in `status` (only a trackid when none plays)."""
    loop = status.get("loop")
    if not loop:
        return {"mpris:trackid": Variant("o", NO_TRACK)}
    meta = {
        "mpris:trackid": Variant("o", track_id(loop.get("id"))),
        "xesam:title": Variant("s", str(loop.get("prompt") or status.get("prompt") or "")),
        "xesam:artist": Variant("as", [artist(status.get("generator") or {})]),
        "xesam:album": Variant("s", "infiniloop"),
    }
    seconds = loop.get("seconds")
    if isinstance(seconds, (int, float)) and seconds > 0:
        meta["mpris:length"] = Variant("x", int(round(seconds * 1e6)))
    bpm = loop.get("bpm")
    if isinstance(bpm, (int, float)) and bpm > 0:
        meta["xesam:audioBPM"] = Variant("i", int(round(bpm)))
    return meta


def session_bus_address() -> str | None:
    """$DBUS_SESSION_BUS_ADDRESS, else the user bus of dbus-user-session if it is there."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime, "bus").is_socket():
        return f"unix:path={Path(runtime, 'bus')}"
    return None


def _plain(value: Any) -> Any:
    """A comparable form of a property value (Variants compare by identity)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Variant):
        return (value.signature, _plain(value.value))
    return value


class _Root(ServiceInterface):
    """org.mpris.MediaPlayer2: who we are; no window to raise, no quitting from here."""

    def __init__(self) -> None:
        super().__init__("org.mpris.MediaPlayer2")

    @method()
    def Raise(self) -> None:
        return None

    @method()
    def Quit(self) -> None:
        return None

    @dbus_property(access=PropertyAccess.READ)
    def CanQuit(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def CanRaise(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def HasTrackList(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Identity(self) -> DBusStr:
        return "infiniloop"

    @dbus_property(access=PropertyAccess.READ)
    def DesktopEntry(self) -> DBusStr:
        return "infiniloop"

    @dbus_property(access=PropertyAccess.READ)
    def SupportedUriSchemes(self) -> StrList:
        return []

    @dbus_property(access=PropertyAccess.READ)
    def SupportedMimeTypes(self) -> StrList:
        return []


class _Player(ServiceInterface):
    """org.mpris.MediaPlayer2.Player over the core Session."""

    def __init__(self, session: Any) -> None:
        super().__init__("org.mpris.MediaPlayer2.Player")
        self.session = session
        self._tasks: set[asyncio.Task] = set()

    def _status(self) -> dict[str, Any]:
        return self.session.status()

    def _do(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except CoreError as exc:
            raise DBusError(ERROR_FAILED, str(exc)) from None

    # --- methods ------------------------------------------------------------------------

    @method()
    def Play(self) -> None:
        self._do(self.session.play)

    @method()
    def Pause(self) -> None:
        self._do(self.session.pause)

    @method()
    def PlayPause(self) -> None:
        self._do(self.session.toggle)

    @method()
    def Stop(self) -> None:
        self._do(self.session.stop)

    @method()
    async def Next(self) -> None:
        try:
            result = await self.session.next()
        except CoreError as exc:
            raise DBusError(ERROR_FAILED, str(exc)) from None
        if result.pending:
            log.info("mpris: %s", result.message)

    @method()
    def Previous(self) -> None:
        return None  # an endless stream only goes forwards (CanGoPrevious is false)

    @method()
    def Seek(self, offset: DBusInt64) -> None:
        return None  # CanSeek is false: a loop has no position worth seeking to

    @method()
    def SetPosition(self, track: DBusObjectPath, position: DBusInt64) -> None:
        return None

    @method()
    def OpenUri(self, uri: DBusStr) -> None:
        return None  # SupportedUriSchemes is empty

    # --- properties ---------------------------------------------------------------------

    @dbus_property(access=PropertyAccess.READ)
    def PlaybackStatus(self) -> DBusStr:
        return PLAYBACK_STATUS.get(self._status().get("state"), "Stopped")

    @dbus_property(access=PropertyAccess.READ)
    def Metadata(self) -> VariantMap:
        return metadata(self._status())

    @dbus_property()
    def Volume(self) -> DBusDouble:
        return float(self._status().get("volume", 0)) / 100

    @Volume.setter
    def Volume(self, value: DBusDouble) -> None:
        # MPRIS says a negative volume means 0; above 1.0 is allowed, we cap at 100%.
        self._do(self.session.set_volume, max(0.0, min(1.0, value)) * 100)

    @dbus_property()
    def Rate(self) -> DBusDouble:
        return 1.0

    @Rate.setter
    def Rate(self, value: DBusDouble) -> None:
        return None  # MinimumRate == MaximumRate == 1.0: nothing else can be set

    @dbus_property(access=PropertyAccess.READ)
    def MinimumRate(self) -> DBusDouble:
        return 1.0

    @dbus_property(access=PropertyAccess.READ)
    def MaximumRate(self) -> DBusDouble:
        return 1.0

    @dbus_property(access=PropertyAccess.READ)
    def Position(self) -> DBusInt64:
        loop = self._status().get("loop") or {}
        position = loop.get("position")
        return int(position * 1e6) if isinstance(position, (int, float)) else 0

    @dbus_property(access=PropertyAccess.READ)
    def CanGoNext(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanGoPrevious(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def CanPlay(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanPause(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def CanSeek(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def CanControl(self) -> DBusBool:
        return True

    # --- change signals -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The properties that change, as they are now (Position is polled, not signalled)."""
        status = self._status()
        return {
            "PlaybackStatus": PLAYBACK_STATUS.get(status.get("state"), "Stopped"),
            "Metadata": metadata(status),
            "Volume": float(status.get("volume", 0)) / 100,
        }


class MprisFrontend:
    """Owns the bus connection; turns session events into PropertiesChanged."""

    def __init__(self, session: Any, config: Any = True) -> None:
        self.session = session
        self.bus: MessageBus | None = None
        self.player = _Player(session)
        self.root = _Root()
        self._last: dict[str, Any] = {}
        self._refresh_handle: asyncio.Handle | None = None

    async def start(self) -> None:
        try:
            bus = await MessageBus(bus_address=session_bus_address()).connect()
        except Exception as exc:  # no address, refused, auth: all mean "no bus here"
            log.warning("mpris: no D-Bus session bus (%s); media keys and playerctl are off", exc)
            return
        bus.export(OBJECT_PATH, self.root)
        bus.export(OBJECT_PATH, self.player)
        try:
            reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        except Exception as exc:
            log.warning("mpris: cannot take the name %s (%s); MPRIS is off", BUS_NAME, exc)
            bus.disconnect()
            return
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            log.warning("mpris: %s is owned by another process; MPRIS is off", BUS_NAME)
            bus.disconnect()
            return
        self.bus = bus
        self._last = _plain(self.player.snapshot())
        self.session.add_listener(self)
        log.info("mpris: on the session bus as %s", BUS_NAME)

    async def close(self) -> None:
        self.session.remove_listener(self)
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        # Several events often come at once (a switch: loop_started, state, ...): one
        # look at the status after them all.
        if self._refresh_handle is None and self.bus is not None:
            self._refresh_handle = asyncio.get_running_loop().call_soon(self._refresh)

    def _refresh(self) -> None:
        self._refresh_handle = None
        if self.bus is None or not self.bus.connected:
            return
        now = self.player.snapshot()
        changed = {k: v for k, v in now.items() if _plain(v) != self._last.get(k)}
        if not changed:
            return
        self._last = {k: _plain(v) for k, v in now.items()}
        try:
            self.player.emit_properties_changed(changed)
        except Exception as exc:  # a bus that went away: nothing to tell
            log.debug("mpris: PropertiesChanged not sent: %s", exc)
