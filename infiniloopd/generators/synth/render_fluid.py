"""Offline rendering of a score through FluidSynth and a General MIDI SoundFont."""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import numpy as np

from .composer import Score

log = logging.getLogger(__name__)

BLOCK = 64  # FluidSynth's internal block; events are aligned to nothing finer anyway


class FluidRenderer:
    """One FluidSynth instance with a SoundFont loaded, reused for every clip.

    Loading FluidR3_GM takes ~0.25 s, so it is done once. Renders are serialized by a
    lock; between them the synth is reset so no state leaks from one clip to the next.
    Raises ImportError/OSError/RuntimeError when FluidSynth or the SoundFont cannot load.
    """

    def __init__(self, soundfont: Path, sr: int = 32000) -> None:
        import fluidsynth  # ImportError when libfluidsynth is missing

        self.soundfont = soundfont
        self.sr = sr
        self._lock = threading.Lock()
        # Built-in reverb and chorus off: they keep state between clips and our own
        # reverb (fx.py) is applied to the mix anyway. No audio driver is ever started.
        self._synth = fluidsynth.Synth(
            gain=0.6,
            samplerate=float(sr),
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256},
        )
        self._sfid = self._synth.sfload(str(soundfont))
        if self._sfid < 0:
            self._synth.delete()
            raise RuntimeError(f"FluidSynth could not load {soundfont}")
        # Float output without the dither that fluid_synth_write_s16 adds (its dither
        # position carries across calls, which would make renders non-deterministic).
        self._write = fluidsynth.cfunc(
            "fluid_synth_write_float",
            ctypes.c_int,
            ("synth", ctypes.c_void_p, 1),
            ("len", ctypes.c_int, 1),
            ("lout", ctypes.c_void_p, 1),
            ("loff", ctypes.c_int, 1),
            ("lincr", ctypes.c_int, 1),
            ("rout", ctypes.c_void_p, 1),
            ("roff", ctypes.c_int, 1),
            ("rincr", ctypes.c_int, 1),
        )
        if self._write is None:
            self._synth.delete()
            raise RuntimeError("libfluidsynth lacks fluid_synth_write_float")

    def close(self) -> None:
        with self._lock:
            if self._synth is not None:
                self._synth.delete()
                self._synth = None

    def render(self, score: Score, frames: int) -> np.ndarray:
        """Render `frames` samples of the score, mono float32 (dry, unnormalized)."""
        with self._lock:
            if self._synth is None:
                raise RuntimeError("renderer closed")
            return self._render(score, frames)

    def _render(self, score: Score, frames: int) -> np.ndarray:
        synth = self._synth
        synth.system_reset()
        for part in score.parts:
            ok = synth.program_select(part.channel, self._sfid, part.bank, part.program)
            if ok != 0 and part.bank == 128:
                # Small SoundFonts carry only the standard kit.
                synth.program_select(part.channel, self._sfid, 128, 0)
            synth.cc(part.channel, 7, part.volume)
            synth.cc(part.channel, 10, 64)

        events: list[tuple[int, int, int, int, int]] = []  # (frame, order, chan, key, vel)
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
        # Silence what still rings so the next clip starts clean.
        for part in score.parts:
            synth.all_sounds_off(part.channel)
        return (left + right) * 0.5
