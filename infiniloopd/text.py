"""The one check for text entering the daemon: socket, config, state, sidecars, file names.

A text that gets in is persisted (state.json, sidecars), passed to generators and
printed by clients; one that cannot be encoded as UTF-8 (a lone surrogate from a JSON
`\\ud800` escape, or a file name's undecodable bytes) or that carries control
characters breaks each of those later, far from where it came in. So it is refused at
the door, with the reason, and nothing invalid is ever stored.

Import-light (stdlib only): the client and the config loader use it.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls. A name (prompt, preset, file name, key) holds none;
# free text (a command's arguments) may hold tab and newline.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_FREE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def text_problem(
    value: object, *, max_len: int = 1000, name: bool = True, nonempty: bool = True
) -> str | None:
    """Why `value` may not enter the daemon as text, or None when it may.

    `name` refuses every control character (a prompt, a preset, a file name);
    otherwise tab and newline are allowed. The reason is a short phrase for a
    one-line message ("contains a control character (U+0007)").
    """
    if not isinstance(value, str):
        return "not text"
    if len(value) > max_len:
        return f"longer than {max_len} characters"
    if nonempty and not value.strip():
        return "empty"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        return f"not valid UTF-8 (U+{code:04X} at character {exc.start})"
    bad = (_CONTROL if name else _CONTROL_FREE).search(value)
    if bad is not None:
        return f"contains a control character (U+{ord(bad.group()):04X})"
    return None


def valid_text(value: object, **kw: object) -> bool:
    """True when `value` passes text_problem (same keyword arguments)."""
    return text_problem(value, **kw) is None  # type: ignore[arg-type]


def printable(text: str) -> str:
    """`text` with control characters and lone surrogates replaced, for log and error lines."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)


def terminal_safe(text: str) -> str:
    """`text` for a terminal: lines and tabs kept, escape sequences and other controls not.

    What the daemon reports comes partly from elsewhere (a generator's output, a
    server's error, a file name); an ESC in it must not drive the user's terminal.
    """
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL_FREE.sub("\N{REPLACEMENT CHARACTER}", text)
