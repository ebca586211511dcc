"""What the user changed at run time, kept across restarts in state.json.

Written atomically (temp file, fsync, rename). A state file that cannot be read is
renamed aside with a warning and the daemon starts from its config: losing the
last volume is better than refusing to play.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infiniloopd import paths
from infiniloopd.atomic import read_bounded, write_bytes_atomic
from infiniloopd.text import text_problem

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# Generator settings that may be changed at run time (and so are persisted).
GENERATOR_KEYS = ("backend", "model", "seconds")
HISTORY_MAX = 100  # played loops kept (and shown by `history`)
# A state file is a few kilobytes; a bigger one is not ours to parse.
MAX_STATE_BYTES = 1024 * 1024


@dataclass
class State:
    prompt: str | None = None
    preset: str | None = None
    volume: int | None = None  # 0..100
    paused: bool = False
    crossfade: float | None = None
    min_play: float | None = None
    generator: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # newest first
    saved_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def state_path() -> Path:
    return paths.state_dir() / STATE_FILE


def _number(value: Any, lo: float, hi: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)  # a 400-digit integer is valid JSON, too big for a float
    except OverflowError:
        return None
    if not math.isfinite(number) or not lo <= number <= hi:
        return None
    return value


def _text(value: Any, max_len: int) -> str | None:
    """A text from the file if it may enter the daemon (see infiniloopd.text), else None."""
    return value if text_problem(value, max_len=max_len) is None else None


def _stats(value: Any) -> dict[str, Any]:
    """Per-model counters kept across restarts: {name: {counter: number}}, nothing deeper."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for model, counters in list(value.items())[:100]:
        if _text(model, 200) is None or not isinstance(counters, dict):
            continue
        out[model] = {
            k: v
            for k, v in list(counters.items())[:20]
            if _text(k, 100) is not None and _number(v, 0, 1e12) is not None
        }
    return out


def from_json(data: Any) -> State:
    """A State from parsed JSON; values that are missing or invalid are left at defaults."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    st = State()
    # Texts that may not enter the daemon (a lone surrogate, a control character) are
    # dropped here, as from every other way in, instead of failing every generation.
    st.prompt = _text(data.get("prompt"), 1000)
    st.preset = _text(data.get("preset"), 40)
    vol = _number(data.get("volume"), 0, 100)
    st.volume = None if vol is None else int(vol)
    st.paused = data.get("paused") is True
    st.crossfade = _number(data.get("crossfade"), 0, 60)
    st.min_play = _number(data.get("min_play"), 0, 86400)
    gen = data.get("generator")
    if isinstance(gen, dict):
        st.generator = {
            k: v
            for k, v in gen.items()
            if k in GENERATOR_KEYS
            and (_text(v, 100) is not None or _number(v, 0, 86400) is not None)
        }
    st.stats = _stats(data.get("stats"))
    if isinstance(data.get("history"), list):
        st.history = [h for h in map(_history_entry, data["history"][:HISTORY_MAX]) if h]
    st.saved_at = _number(data.get("saved_at"), 0, math.inf)
    return st


def _history_entry(item: Any) -> dict[str, Any] | None:
    """One played loop as the history command shows it, or None if it is malformed."""
    if not isinstance(item, dict) or _text(item.get("id"), 100) is None:
        return None
    started = _number(item.get("started"), 0, math.inf)
    if started is None:
        return None
    prompt = item.get("prompt")
    return {
        "id": item["id"],
        "prompt": _text(prompt, 1000) or "",
        "bpm": _number(item.get("bpm"), 0, 1000),
        "seconds": _number(item.get("seconds"), 0, 86400),
        "started": started,
    }


def load_state(path: Path | None = None) -> State:
    """The saved state, or a fresh one if there is none or it is unreadable."""
    path = path or state_path()
    try:
        raw = read_bounded(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return State()
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EIO):
            # Not ours to move (or the disk is failing): leave it, start from the config.
            log.warning("%s: cannot read state (%s); starting from the config", path, exc.strerror)
            return State()
        reason = exc.strerror or str(exc)
    else:
        try:
            return from_json(json.loads(raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 text (byte {exc.start})"
        except (ValueError, RecursionError) as exc:
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    # Corrupt, truncated, huge, deep, a directory, a FIFO: moved aside so the next save
    # can write a good one, and kept for whoever wants to look at it.
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        os.replace(path, aside)
        where = f"moved to {aside}"
    except OSError as err:
        where = f"could not move it aside: {err.strerror}"
    log.warning("%s: corrupt state file (%s), %s; starting from the config", path, reason, where)
    return State()


def save_state(state: State, path: Path | None = None) -> Path:
    """Write the state atomically; returns the path written."""
    path = path or state_path()
    paths.ensure_dir(path.parent)
    state.saved_at = time.time()
    data = json.dumps(state.to_json(), indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, data.encode("utf-8"))
    return path
