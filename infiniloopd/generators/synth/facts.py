"""A clip's musical facts beside it, `<clip>.music.json`: import-light, for the daemon.

The synth writes what it composed (style, key, tempo, instruments, section) there; the
producer reads it into the loop's sidecar as the optional `music` dict.
"""

from __future__ import annotations

import json
from pathlib import Path

from infiniloopd.atomic import read_bounded

MAX_FACTS_BYTES = 64 * 1024


def music_path(clip: Path) -> Path:
    """Where the facts of `clip` are: beside it, its name plus `.music.json`."""
    return clip.with_name(clip.name + ".music.json")


def read_music(clip: Path) -> dict | None:
    """The facts written beside `clip`, or None when there are none or they are unreadable."""
    try:
        data = json.loads(read_bounded(music_path(clip), MAX_FACTS_BYTES).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
