"""Domain errors of the core: what went wrong, in one line, without any wire code.

Each frontend maps these to its own protocol (the ZeroMQ frontend to error codes and
infiniloopctl's exit status, MPD to ACK codes, MPRIS to D-Bus errors).
"""

from __future__ import annotations

from infiniloopd.errors import UserError


class CoreError(UserError):
    """A request the core cannot carry out; the message names the action and why."""


class InvalidValue(CoreError):
    """A value out of range or of the wrong kind (`volume: expected 0..100, got 120`)."""


class NotReady(CoreError):
    """Valid, but not possible yet (`save` with nothing playing)."""


class NotFound(CoreError):
    """A name that does not exist (an unknown preset)."""


class Exists(CoreError):
    """The action would overwrite something (`save` onto an existing file)."""


class Failed(CoreError):
    """Valid and possible, but carrying it out failed (a file that cannot be written)."""
