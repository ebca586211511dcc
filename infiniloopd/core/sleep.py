"""The sleep timer's pure parts: duration parsing and the fade-out curve."""

from __future__ import annotations

import re

from infiniloopd.core.errors import InvalidValue

SLEEP_MAX = 24 * 3600.0
FADE_MAX = 60.0  # the fade covers the last minute, or all of a shorter timer
_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}
OFF_WORDS = ("off", "cancel", "none")


def parse_duration(text: str, where: str = "sleep") -> float | None:
    """Seconds for "45s", "30m", "1h", "1h30m" or a bare number of seconds; None for "off".

    Raises InvalidValue naming `where` for anything else, or for 0 or more than a day.
    """
    value = text.strip().lower()
    if value in OFF_WORDS:
        return None
    expected = f"{where}: expected a duration such as 45s, 30m, 1h or 1h30m, or off, got {text!r}"
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                raise InvalidValue(expected) from None
            seconds += float(match.group(1)) * _UNIT[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise InvalidValue(expected) from None
    if not 0 < seconds <= SLEEP_MAX:
        raise InvalidValue(f"{where}: expected a duration above 0 and at most 24h, got {text!r}")
    return seconds


def fade_length(total: float) -> float:
    """How long the fade-out at the end of a `total`-second timer lasts."""
    return min(FADE_MAX, total)


def fade_gain(remaining: float, fade: float) -> float:
    """The gain (0..1) with `remaining` seconds left in a fade of `fade` seconds.

    Linear in dB would sound more even, but a linear-amplitude ramp to true silence
    is what the ear expects from a sleep fade: it ends at 0, not at -60 dB.
    """
    if fade <= 0 or remaining >= fade:
        return 1.0
    return max(0.0, remaining / fade)
