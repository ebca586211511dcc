"""One command table for the daemon and `infiniloopctl`: names, arguments, help.

The daemon validates requests against it; the client builds its command line from
it. It also holds the only map from domain errors to wire codes and from wire codes
to the client's exit status. Import-light (stdlib, `protocol`, `text`): the client
imports it and must start fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from infiniloopd import protocol
from infiniloopd.core import errors as core_errors
from infiniloopd.errors import UserError
from infiniloopd.protocol import ProtocolError
from infiniloopd.text import printable, text_problem

EXIT_OK = 0
EXIT_REFUSED = 1  # any error reply from the daemon
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


@dataclass(frozen=True)
class Arg:
    """One declared argument of a command.

    kind: "str" (text), "float", "int", "bool", "step" (a number or a "+N"/"-N" string,
    as in `volume +5`), "path", "duration" (a number of seconds, or text like "30m",
    "1h", "off"; the daemon parses it).
    cli: how `infiniloopctl` takes it: "positional" (optional unless required),
    "words" (the rest of the line, joined by spaces), "flag" (--name), "option" (--name V).
    """

    name: str
    kind: str = "str"
    required: bool = False
    lo: float = -math.inf
    hi: float = math.inf
    max_len: int = 1000
    choices: tuple[str, ...] = ()
    cli: str = "positional"
    help: str | None = None
    default: Any = None  # the client's default for an option

    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind in ("float", "int", "step"):
            what = "an integer" if self.kind == "int" else "a number"
            rng = f" between {self.lo:g} and {self.hi:g}" if math.isfinite(self.hi) else ""
            if self.kind == "step":
                return f"{what}{rng}, or +N / -N"
            return what + rng
        if self.kind == "bool":
            return "true or false"
        if self.kind == "duration":
            return "a duration such as 45s, 30m, 1h or 1h30m, or off"
        return f"text of at most {self.max_len} characters"

    def convert(self, value: Any) -> Any:
        """The value converted and range-checked; raises ValueError on anything else."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if self.kind == "duration":
            if isinstance(value, str):
                if len(value) > 40 or text_problem(value, max_len=40) is not None:
                    raise ValueError
                return value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            return value
        if self.kind in ("str", "path"):
            # Names, prompts and paths all end up persisted or printed: one check for all.
            nonempty = bool(self.kind == "path" or self.choices or self.required)
            if text_problem(value, max_len=self.max_len, nonempty=nonempty) is not None:
                raise ValueError
            if self.choices and value not in self.choices:
                raise ValueError
            return value
        if self.kind == "step" and isinstance(value, str):
            text = value.strip()
            if len(text) > 20 or not text or text[0] not in "+-":
                raise ValueError
            delta = float(text)  # ValueError for junk
            if not math.isfinite(delta) or abs(delta) > self.hi - self.lo:
                raise ValueError
            return ("delta", delta)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError
        if not math.isfinite(value) or not self.lo <= value <= self.hi:
            raise ValueError
        if self.kind == "int":
            if not float(value).is_integer():
                raise ValueError
            return int(value)
        return float(value)


@dataclass(frozen=True)
class Spec:
    """A command: its name, arguments and help; `client` False hides it from the CLI."""

    name: str
    args: tuple[Arg, ...] = ()
    help: str = ""
    client: bool = True


_SECONDS = {"lo": 0.0, "hi": 86400.0}

COMMANDS: tuple[Spec, ...] = (
    Spec("status", help="show what plays and what is being generated (the default)"),
    Spec("play", help="start or resume playing"),
    Spec("pause", help="pause (position kept)"),
    Spec("toggle", help="pause if playing, else play"),
    Spec("stop", help="stop playing"),
    Spec("next", help="crossfade to the next ready loop now"),
    Spec(
        "prompt",
        (
            Arg("text", max_len=1000, cli="words", help="the prompt"),
            Arg("keep", "bool", cli="flag", help="keep the queued loops of the old prompt"),
        ),
        "set the prompt for new clips (no TEXT: show it)",
    ),
    Spec("preset", (Arg("name", required=True, max_len=40),), "switch to a mood preset"),
    Spec("presets", help="list the mood presets"),
    Spec("volume", (Arg("value", "step", lo=0, hi=100),), "show or set the volume (0-100, +N, -N)"),
    Spec(
        "crossfade",
        (Arg("seconds", "float", lo=0, hi=60),),
        "show or set the crossfade in seconds",
    ),
    Spec(
        "min-play",
        (Arg("seconds", "float", **_SECONDS),),
        "show or set how long a loop plays at least, in seconds",
    ),
    Spec("model", (Arg("name", max_len=100),), "show or set the generator model"),
    Spec(
        "duration",
        (Arg("seconds", "float", lo=0, hi=3600),),
        "show or set the length of generated clips in seconds",
    ),
    Spec("generator", (Arg("name", max_len=40),), "show or set the generator backend"),
    Spec(
        "save",
        (
            Arg("path", max_len=4096, help="file name, relative to the music dir"),
            Arg("force", "bool", cli="flag", help="overwrite an existing file"),
        ),
        "save the current loop (WAV or FLAC by extension) into the music dir",
    ),
    Spec("queue", help="list the loops ready to play"),
    Spec("history", help="list the loops played"),
    Spec(
        "library",
        (
            Arg(
                "limit",
                "int",
                lo=0,
                hi=100000,
                cli="option",
                default=20,
                help="entries to list (default 20)",
            ),
        ),
        "show the loop library",
    ),
    Spec(
        "sleep",
        (Arg("duration", "duration", help="e.g. 30m, 45s, 1h, or off; none: show"),),
        "pause after a while, fading out over the last minute (off: cancel)",
    ),
    Spec(
        "schedule",
        (
            Arg(
                "count",
                "int",
                lo=1,
                hi=1000,
                cli="option",
                default=10,
                help="firings to list (default 10)",
            ),
        ),
        "list the next firings of the config's schedule",
    ),
    Spec("reload", help="reload the config file"),
    Spec("events", (Arg("since", "int", lo=0, hi=2**62),), "events since a seq", client=False),
    Spec("ping", help="check that the daemon answers"),
    Spec("version", help="show the client and daemon versions"),
    Spec("help", help="the commands", client=False),
)

SPECS: dict[str, Spec] = {s.name: s for s in COMMANDS}


def validate(command: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The request's args converted per the command's declaration; ProtocolError if not."""
    known = {a.name: a for a in command.args}
    for key in args:
        if key not in known:
            names = ", ".join(known) or "none"
            raise ProtocolError(
                protocol.BAD_ARGUMENT,
                f"{command.name}: unknown argument {printable(str(key)[:40])!r} "
                f"(arguments: {names})",
            )
    out: dict[str, Any] = {}
    for arg in command.args:
        if arg.name not in args or args[arg.name] is None:
            if arg.required:
                raise ProtocolError(
                    protocol.BAD_ARGUMENT, f"{command.name}: missing {arg.name} ({arg.expected()})"
                )
            out[arg.name] = None
            continue
        value = args[arg.name]
        try:
            out[arg.name] = arg.convert(value)
        except (ValueError, TypeError, OverflowError):
            shown = printable(repr(value))
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ProtocolError(
                protocol.BAD_ARGUMENT,
                f"{command.name}: {arg.name}: expected {arg.expected()}, got {shown}",
            ) from None
    return out


# --- the one map from errors to wire codes and exit status ------------------------------

_WIRE_CODES: tuple[tuple[type[Exception], str], ...] = (
    (core_errors.InvalidValue, protocol.BAD_ARGUMENT),
    (core_errors.NotReady, protocol.NOT_READY),
    (core_errors.NotFound, protocol.NOT_FOUND),
    (core_errors.Exists, protocol.EXISTS),
    (core_errors.Failed, protocol.FAILED),
)


def wire_code(exc: UserError) -> str:
    """The reply's error code for an error a user can cause."""
    if isinstance(exc, ProtocolError):
        return exc.code
    for kind, code in _WIRE_CODES:
        if isinstance(exc, kind):
            return code
    return protocol.FAILED


def exit_status(code: str) -> int:
    """`infiniloopctl`'s exit status for an error reply: every refusal is 1."""
    del code  # all codes alike: the message on stderr says which
    return EXIT_REFUSED
