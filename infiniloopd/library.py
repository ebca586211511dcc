"""The loop library: every playable loop on disk as FLAC plus a JSON sidecar.

A loop exists once its sidecar exists: the FLAC is written (temp file, fsync,
rename) before the sidecar, so a crash leaves at worst an orphan FLAC or a temp
file, both removed by the next scan. The library is capped in size and evicts the
least recently played loops first (loops the user saved live in the music dir and
are not managed here). Methods are thread-safe: the producer writes from an
executor thread while the main thread reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infiniloopd.atomic import TMP_SUFFIX, read_bounded, write_audio_atomic, write_json_atomic
from infiniloopd.errors import UserError
from infiniloopd.paths import ensure_dir
from infiniloopd.text import printable, text_problem

log = logging.getLogger(__name__)

SIDE = ".json"
AUDIO = ".flac"
TMP = TMP_SUFFIX  # crash leftovers of atomic writes


@dataclass
class LoopEntry:
    """One loop in the library and the facts about it."""

    id: str
    path: Path
    prompt: str
    generator: str
    model: str
    seconds: float  # loop length
    bpm: float | None
    start: int  # loop points in the analysed clip, in samples at `rate`
    end: int
    rate: int
    channels: int
    loudness_lufs: float | None
    created: float
    last_played: float | None
    score: float | None
    source_seconds: float  # length of the clip the loop was cut from
    music: dict | None = None  # the composer's facts (style, key, tempo, ...), synth only

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        return data

    @classmethod
    def from_json(cls, data: Any, path: Path) -> LoopEntry:
        """Build from a sidecar's data; ValueError names the first bad field."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")

        def get(key: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
            value = data.get(key)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, kind):
                shown = repr(value)[:40] if isinstance(value, (str, int, float)) else None
                shown = shown if shown is not None else f"a JSON {type(value).__name__}"
                raise ValueError(f"{key}: expected {_kind_name(kind)}, got {shown}")
            if isinstance(value, str) and text_problem(value, max_len=1000, nonempty=False):
                raise ValueError(f"{key}: {text_problem(value, max_len=1000, nonempty=False)}")
            if isinstance(value, (int, float)) and not _finite_number(value):
                raise ValueError(f"{key}: expected a finite number")
            return value

        num = (int, float)
        return cls(
            id=get("id", str),
            path=path,
            prompt=get("prompt", str),
            generator=get("generator", str),
            model=get("model", str),
            seconds=float(get("seconds", num)),
            bpm=_opt_float(get("bpm", num, True)),
            start=int(get("start", int)),
            end=int(get("end", int)),
            rate=int(get("rate", int)),
            channels=int(get("channels", int)),
            loudness_lufs=_opt_float(get("loudness_lufs", num, True)),
            created=float(get("created", num)),
            last_played=_opt_float(get("last_played", num, True)),
            score=_opt_float(get("score", num, True)),
            source_seconds=float(get("source_seconds", num)),
            music=data.get("music") if isinstance(data.get("music"), dict) else None,
        )


# A sidecar is under a kilobyte (plus a beat grid); anything far bigger is not one.
MAX_SIDECAR_BYTES = 4 * 1024 * 1024


def read_sidecar(path: Path) -> LoopEntry:
    """The entry of the sidecar at `path`; UserError (one line naming the file) if unusable.

    Bounded (size, nesting), strict about types and texts (see infiniloopd.text), and
    never blocked by a FIFO or a directory where a sidecar should be.
    """
    shown = printable(str(path))
    try:
        raw = read_bounded(path, MAX_SIDECAR_BYTES)
    except OSError as exc:
        raise UserError(f"{shown}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
        entry = LoopEntry.from_json(data, path.with_suffix(AUDIO))
    except UnicodeDecodeError as exc:
        raise UserError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise UserError(f"{shown}: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        reason = printable(" ".join(str(exc).split()))[:200]
        raise UserError(f"{shown}: {reason}") from None
    if entry.id != path.stem:
        raise UserError(f"{shown}: id {printable(entry.id)!r} does not match the file name")
    if not 1000 <= entry.rate <= 768000 or not 1 <= entry.channels <= 64:
        raise UserError(f"{shown}: rate {entry.rate} Hz, {entry.channels} channels: not audio")
    return entry


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "a number" if isinstance(kind, tuple) else {str: "a string", int: "an integer"}[kind]


def _finite_number(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))  # a 400-digit integer overflows a float
    except OverflowError:
        return False


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


class Library:
    """Loops on disk under `directory`, capped at `max_mb` megabytes."""

    def __init__(
        self,
        directory: Path,
        max_mb: float,
        *,
        rate: int | None = None,
        channels: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        # What `load` delivers (the output's format); None keeps each loop's own.
        self.rate = rate
        self.channels = channels
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._entries: dict[str, LoopEntry] = {}
        self._sizes: dict[str, int] = {}
        self._lock = threading.RLock()

    # --- reading the directory ---------------------------------------------------------

    def scan(self) -> None:
        """Load every sidecar; skip corrupt ones with a warning; remove crash leftovers."""
        ensure_dir(self.directory)
        entries: dict[str, LoopEntry] = {}
        sizes: dict[str, int] = {}
        names = {p.name for p in self.directory.iterdir()}
        for name in sorted(names):
            path = self.directory / name
            if name.endswith(TMP):
                log.info("library: removing leftover %s", name)
                with contextlib.suppress(OSError):
                    path.unlink()
            elif name.endswith(AUDIO) and name[: -len(AUDIO)] + SIDE not in names:
                # Written but never published: the sidecar comes last.
                log.info("library: removing %s (no sidecar; an interrupted write)", name)
                with contextlib.suppress(OSError):
                    path.unlink()
            elif name.endswith(SIDE) and not name.startswith("."):
                entry = self._read_sidecar(path)
                if entry is not None:
                    entries[entry.id] = entry
                    sizes[entry.id] = _size(entry.path) + _size(path)
        with self._lock:
            self._entries = entries
            self._sizes = sizes
        log.info(
            "library: %d loops, %.1f MB in %s",
            len(entries),
            self.size_bytes() / 2**20,
            self.directory,
        )

    def _read_sidecar(self, path: Path) -> LoopEntry | None:
        """The entry a sidecar describes, or None with one warning saying why it is skipped."""
        audio = path.with_suffix(AUDIO)
        try:
            entry = read_sidecar(path)
        except UserError as exc:
            log.warning("library: skipping %s", exc)
            return None
        if not audio.is_file():
            log.warning("library: skipping %s: its audio %s is missing", path, audio.name)
            return None
        return entry

    # --- adding and removing -----------------------------------------------------------

    def add(self, audio: np.ndarray, rate: int, meta: dict) -> LoopEntry:
        """Store a loop (atomic FLAC then JSON) and evict old loops beyond the cap."""

        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.size == 0:
            raise UserError("library: refusing to store an empty loop")
        ensure_dir(self.directory)
        now = time.time()
        loop_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(3)
        path = self.directory / (loop_id + AUDIO)
        entry = LoopEntry(
            id=loop_id,
            path=path,
            prompt=str(meta.get("prompt", "")),
            generator=str(meta.get("generator", "")),
            model=str(meta.get("model", "")),
            seconds=audio.shape[0] / rate,
            bpm=_opt_float(meta.get("bpm")),
            start=int(meta.get("start", 0)),
            end=int(meta.get("end", audio.shape[0])),
            rate=int(rate),
            channels=int(audio.shape[1]),
            loudness_lufs=_finite(meta.get("loudness_lufs")),
            created=now,
            last_played=None,
            score=_finite(meta.get("score")),
            source_seconds=float(meta.get("source_seconds", audio.shape[0] / rate)),
            music=meta.get("music") if isinstance(meta.get("music"), dict) else None,
        )
        try:
            # Loops are normalized under a peak ceiling, so 24-bit PCM loses nothing audible.
            # The sidecar comes last: a loop exists once its sidecar does.
            write_audio_atomic(path, audio, rate, format="FLAC", subtype="PCM_24")
            write_json_atomic(path.with_suffix(SIDE), entry.to_json())
        except OSError as exc:
            for leftover in (path, path.with_suffix(SIDE)):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise UserError(f"library: cannot write {path}: {exc.strerror or exc}") from None
        with self._lock:
            self._entries[entry.id] = entry
            self._sizes[entry.id] = _size(path) + _size(path.with_suffix(SIDE))
            self._evict(keep=entry.id)
        return entry

    def _evict(self, keep: str) -> None:
        total = sum(self._sizes.values())
        if total <= self.max_bytes:
            return
        # Never-played loops count from their creation, so fresh loops get a chance.
        order = sorted(
            (e for e in self._entries.values() if e.id != keep),
            key=lambda e: e.last_played or e.created,
        )
        for entry in order:
            if total <= self.max_bytes:
                break
            total -= self._sizes.get(entry.id, 0)
            self._remove_locked(entry)
            log.info("library: evicted %s (%s) to stay under the size cap", entry.id, entry.prompt)

    def _remove_locked(self, entry: LoopEntry) -> None:
        self._entries.pop(entry.id, None)
        self._sizes.pop(entry.id, None)
        # Sidecar first: a loop without a sidecar is a leftover, never a broken entry.
        for path in (entry.path.with_suffix(SIDE), entry.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove(self, entry: LoopEntry) -> None:
        with self._lock:
            self._remove_locked(entry)

    # --- reading loops -----------------------------------------------------------------

    def load(self, entry: LoopEntry) -> np.ndarray:
        """The loop's audio, float32 (frames, channels), at the output's rate and channels.

        A loop made before `output.rate` or `output.channels` changed is converted as it
        is read (soxr, seam kept), never played at the wrong speed or refused.
        """
        from infiniloopd.audiofile import read_audio

        try:
            # The header must agree with the sidecar before the file is decoded.
            audio, rate = read_audio(entry.path, always_2d=True, max_seconds=entry.seconds + 1)
        except UserError as exc:
            raise UserError(f"library: {exc}") from None
        if rate != entry.rate:
            raise UserError(f"library: {entry.path} is at {rate} Hz, its sidecar says {entry.rate}")
        if audio.shape[0] == 0:
            raise UserError(f"library: {entry.path} holds no audio")
        if not np.isfinite(audio).all():
            raise UserError(f"library: {entry.path} holds NaN or infinite samples")
        to_rate = self.rate or rate
        to_channels = self.channels or audio.shape[1]
        if (rate, audio.shape[1]) != (to_rate, to_channels):
            log.info(
                "library: %s is %d Hz, %d channels; converting to %d Hz, %d channels",
                entry.id,
                rate,
                audio.shape[1],
                to_rate,
                to_channels,
            )
            audio = convert_loop(audio, rate, to_rate, to_channels)
        return audio

    def touch(self, entry: LoopEntry) -> None:
        """Record that the loop was played now (kept in its sidecar)."""
        with self._lock:
            current = self._entries.get(entry.id)
            if current is None:
                return  # evicted meanwhile: do not resurrect a sidecar without audio
            current.last_played = entry.last_played = time.time()
            try:
                write_json_atomic(current.path.with_suffix(SIDE), current.to_json())
            except OSError as exc:
                log.warning("library: cannot update %s: %s", current.id, exc.strerror or exc)

    def entries(self) -> list[LoopEntry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.created)

    def get(self, loop_id: str) -> LoopEntry | None:
        with self._lock:
            return self._entries.get(loop_id)

    def pick(self, prompt: str, exclude: set[str]) -> LoopEntry | None:
        """A loop to play: of this prompt if any, the one heard least recently."""
        with self._lock:
            pool = [e for e in self._entries.values() if e.id not in exclude]
        if not pool:
            return None
        want = _norm(prompt)
        same = [e for e in pool if _norm(e.prompt) == want]
        return min(same or pool, key=lambda e: (e.last_played or 0.0, e.created))

    def size_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())


def convert_loop(audio: np.ndarray, rate: int, to_rate: int, to_channels: int) -> np.ndarray:
    """A seamless loop at another rate and channel count, still seamless.

    The resampler sees the loop with a wrapped-around margin on each side, so the
    samples near the seam are computed from their real neighbours, not from silence.
    """
    # Deferred: the daemon imports the analysis code only when an old loop needs it.
    from infiniloopd.analysis.pipeline import map_channels
    from infiniloopd.analysis.resample import resample

    out = map_channels(audio, to_channels)
    if rate == to_rate:
        return out
    frames = out.shape[0]
    margin = min(frames, max(rate // 10, 64))
    wrapped = np.concatenate([out[-margin:], out, out[:margin]])
    converted = resample(wrapped, rate, to_rate)
    start = round(margin * to_rate / rate)
    length = round(frames * to_rate / rate)
    return np.ascontiguousarray(converted[start : start + length])


def _norm(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
