"""Offline rendering of a score through FluidSynth and a General MIDI SoundFont."""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .composer import Score

log = logging.getLogger(__name__)

FLUID_WARN = 2  # enum fluid_log_level


def _proto(fluidsynth: ModuleType, name: str, result: Any, *args: tuple) -> Any:
    """A libfluidsynth function pyfluidsynth does not wrap, or None if the lib lacks it."""
    return fluidsynth.cfunc(name, result, *[(a[0], a[1], 1) for a in args])


class FluidRenderer:
    """A SoundFont loaded once into FluidSynth, and a fresh synth for every clip.

    Loading FluidR3_GM takes ~0.25 s, so a holder synth loads it once; each render adds
    that same SoundFont to a new synth (~5 ms), because a reused synth carries voice state
    from one clip into the next and the same prompt and seed would not sound the same.
    Renders are serialized by a lock. No audio driver is ever started.
    Raises ImportError/OSError when libfluidsynth is missing, RuntimeError when the
    SoundFont cannot be loaded.
    """

    def __init__(self, soundfont: Path, sr: int = 32000) -> None:
        import fluidsynth  # ImportError when libfluidsynth is missing

        self._fs = fluidsynth
        self.soundfont = soundfont
        self.sr = sr
        self._lock = threading.Lock()
        ptr, i = ctypes.c_void_p, ctypes.c_int
        self._write = _proto(
            fluidsynth,
            "fluid_synth_write_float",
            i,
            ("synth", ptr),
            ("len", i),
            ("lout", ptr),
            ("loff", i),
            ("lincr", i),
            ("rout", ptr),
            ("roff", i),
            ("rincr", i),
        )
        self._get_sfont = _proto(
            fluidsynth, "fluid_synth_get_sfont_by_id", ptr, ("synth", ptr), ("id", i)
        )
        self._add_sfont = _proto(
            fluidsynth, "fluid_synth_add_sfont", i, ("synth", ptr), ("sfont", ptr)
        )
        self._remove_sfont = _proto(
            fluidsynth, "fluid_synth_remove_sfont", i, ("synth", ptr), ("sfont", ptr)
        )
        set_log = _proto(
            fluidsynth, "fluid_set_log_function", ptr, ("level", i), ("fun", ptr), ("data", ptr)
        )
        needed = (self._write, self._get_sfont, self._add_sfont, self._remove_sfont)
        if any(f is None for f in needed):
            raise OSError("libfluidsynth is older than 2.0")
        if set_log is not None:
            # Warnings only: removing the shared SoundFont makes every channel complain
            # that it has no preset. Errors still reach stderr.
            set_log(FLUID_WARN, None, None)
        self._holder = fluidsynth.Synth(samplerate=float(sr), channels=16)
        sfid = self._holder.sfload(str(soundfont))
        self._sfont = self._get_sfont(self._holder.synth, sfid) if sfid >= 0 else None
        if not self._sfont:
            self._holder.delete()
            self._holder = None
            raise RuntimeError(f"FluidSynth could not load {soundfont}")

    def close(self) -> None:
        with self._lock:
            if self._holder is not None:
                self._holder.delete()
                self._holder = None

    def render(self, score: Score, frames: int) -> np.ndarray:
        """Render `frames` samples of the score, mono float32 (dry, unnormalized)."""
        with self._lock:
            if self._holder is None:
                raise RuntimeError("renderer closed")
            # Built-in reverb and chorus off: fx.py puts the whole mix in one room.
            synth = self._fs.Synth(
                gain=0.6,
                samplerate=float(self.sr),
                channels=16,
                **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256},
            )
            sfid = self._add_sfont(synth.synth, self._sfont)
            try:
                return self._render(synth, sfid, score, frames)
            finally:
                synth.system_reset()
                self._remove_sfont(synth.synth, self._sfont)
                synth.delete()

    def _render(self, synth: Any, sfid: int, score: Score, frames: int) -> np.ndarray:
        for part in score.parts:
            ok = synth.program_select(part.channel, sfid, part.bank, part.program)
            if ok != 0 and part.bank == 128:
                # Small SoundFonts carry only the standard kit.
                synth.program_select(part.channel, sfid, 128, 0)
            synth.cc(part.channel, 7, part.volume)
            synth.cc(part.channel, 10, 64)

        events: list[tuple[int, int, int, int, int]] = []  # (frame, on, chan, key, vel)
        for note in score.notes:
            chan = score.parts[note.part].channel
            on = int(round(note.start * self.sr))
            off = int(round((note.start + note.duration) * self.sr))
            if on >= frames:
                continue
            events.append((on, 1, chan, note.pitch, note.velocity))
            if off < frames:
                events.append((off, 0, chan, note.pitch, 0))  # offs first at a tie
        events.sort()

        left = np.zeros(frames, dtype=np.float32)
        right = np.zeros(frames, dtype=np.float32)
        lp, rp = left.ctypes.data, right.ctypes.data
        cursor = 0
        for frame, is_on, chan, key, vel in events:
            if frame > cursor:
                self._write(synth.synth, frame - cursor, lp, cursor, 1, rp, cursor, 1)
                cursor = frame
            if is_on:
                synth.noteon(chan, key, vel)
            else:
                synth.noteoff(chan, key)
        if cursor < frames:
            self._write(synth.synth, frames - cursor, lp, cursor, 1, rp, cursor, 1)
        return (left + right) * 0.5
