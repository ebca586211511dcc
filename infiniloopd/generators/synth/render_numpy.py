"""Pure-numpy rendering of a score: the fallback when no SoundFont or FluidSynth is there.

Each General MIDI program family gets a small wavetable instrument (two tables, bright
and mellow, cross-faded as the note decays, which is what real instruments do) with its
own envelope; drums are synthesized once per clip and mixed in by velocity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from . import styles as c
from .composer import Score

TABLE = 2048


@dataclass(frozen=True)
class _Instrument:
    bright: np.ndarray  # one period, TABLE samples
    mellow: np.ndarray
    attack: float  # seconds
    decay: float  # seconds for the bright-to-mellow change and the level fall
    sustain: float  # level held while the key is down, 0..1 (0: percussive)
    release: float
    vibrato: float = 0.0  # depth in semitones
    detune: float = 0.0  # cents of a second, detuned copy (pads, strings)
    gain: float = 1.0  # trims the family to sit in the mix as the SoundFont's does


def _table(amps: dict[int, float]) -> np.ndarray:
    phase = np.arange(TABLE) / TABLE * 2 * np.pi
    wave = sum(a * np.sin(k * phase) for k, a in amps.items())
    return (wave / np.max(np.abs(wave))).astype(np.float32)


def _saw(n: int, tilt: float = 1.0) -> dict[int, float]:
    return {k: 1 / k**tilt for k in range(1, n + 1)}


def _square(n: int) -> dict[int, float]:
    return {k: 1 / k for k in range(1, n + 1, 2)}


def _instrument(program: int) -> _Instrument:
    """A playable stand-in for a GM program, chosen by family."""
    if program in (4, 5):  # electric piano: bell-like tine over a sine
        return _Instrument(
            _table({1: 1, 2: 0.35, 3: 0.1, 7: 0.12}), _table({1: 1, 2: 0.1}), 0.004, 1.2, 0.0, 0.25
        )
    if program < 8:  # acoustic piano
        return _Instrument(
            _table({1: 1, 2: 0.5, 3: 0.3, 4: 0.18, 5: 0.1, 6: 0.06}),
            _table({1: 1, 2: 0.2, 3: 0.05}),
            0.003,
            1.6,
            0.0,
            0.2,
        )
    if program < 16 or program in (46,):  # mallets, celesta, harp
        return _Instrument(
            _table({1: 1, 3: 0.2, 4: 0.25, 10: 0.05}),
            _table({1: 1}),
            0.002,
            0.7,
            0.0,
            0.3,
            gain=0.4,
        )
    if 24 <= program < 32:  # guitars
        return _Instrument(_table(_saw(10, 1.3)), _table({1: 1, 2: 0.3}), 0.003, 0.9, 0.0, 0.15)
    if 32 <= program < 40:  # basses
        if program in (38, 39):
            return _Instrument(
                _table(_saw(12, 1.2)), _table({1: 1, 2: 0.3}), 0.004, 0.35, 0.45, 0.08
            )
        return _Instrument(
            _table({1: 1, 2: 0.45, 3: 0.15}), _table({1: 1, 2: 0.1}), 0.006, 0.9, 0.25, 0.1
        )
    if program == 47:  # timpani
        return _Instrument(_table({1: 1, 2: 0.3, 3: 0.1}), _table({1: 1}), 0.005, 1.0, 0.0, 0.4)
    if 40 <= program < 56:  # strings, choir
        return _Instrument(
            _table(_saw(14, 1.4)), _table(_saw(6, 1.8)), 0.25, 2.0, 0.8, 0.5, vibrato=0.08, detune=7
        )
    if 56 <= program < 64:  # brass
        return _Instrument(
            _table(_saw(12, 1.1)), _table(_saw(5, 1.6)), 0.06, 1.0, 0.75, 0.2, vibrato=0.05
        )
    if 64 <= program < 80:  # reeds and pipes
        return _Instrument(
            _table({1: 1, 2: 0.2, 3: 0.35, 5: 0.12}),
            _table({1: 1, 3: 0.1}),
            0.05,
            1.0,
            0.8,
            0.15,
            vibrato=0.12,
        )
    if program == 80:  # square lead
        return _Instrument(_table(_square(15)), _table(_square(5)), 0.003, 0.5, 0.6, 0.05, gain=0.6)
    if 80 <= program < 88:  # saw leads
        return _Instrument(_table(_saw(16)), _table(_saw(6, 1.3)), 0.005, 0.4, 0.6, 0.1, detune=8)
    # pads and everything else: slow, warm, detuned
    return _Instrument(
        _table(_saw(10, 1.6)),
        _table({1: 1, 2: 0.3, 3: 0.1}),
        0.6,
        3.0,
        0.85,
        1.0,
        detune=9,
        gain=0.6,
    )


def _note(
    inst: _Instrument, pitch: int, seconds: float, velocity: int, sr: int, rng: np.random.Generator
) -> np.ndarray:
    freq = 440.0 * 2 ** ((pitch - 69) / 12)
    n = int((seconds + inst.release) * sr)
    t = np.arange(n, dtype=np.float32) / sr
    bend = np.ones(n, dtype=np.float32)
    if inst.vibrato:
        depth = inst.vibrato * np.minimum(t / 0.4, 1)  # vibrato grows in, as players do
        bend = 2 ** (depth * np.sin(2 * np.pi * 5.2 * t) / 12)
    phase0 = rng.uniform(0, 1)
    phase = (phase0 + np.cumsum(freq * bend / sr)) % 1.0
    idx = (phase * TABLE).astype(np.int32)
    fall = np.exp(-t / inst.decay)
    # The bright tables would alias above ~1 kHz at 32 kHz: high notes play mellow only.
    bright = fall if freq * 16 < sr / 2 else np.zeros_like(fall)
    wave = inst.bright[idx] * bright + inst.mellow[idx] * (1 - bright)
    if inst.detune:
        ph2 = (phase0 + 0.37 + np.cumsum(freq * 2 ** (inst.detune / 1200) * bend / sr)) % 1.0
        wave = 0.6 * wave + 0.4 * inst.mellow[(ph2 * TABLE).astype(np.int32)]
    env = np.minimum(t / inst.attack, 1.0)
    env *= inst.sustain + (1 - inst.sustain) * fall
    held = int(seconds * sr)
    if held < n:
        env[held:] *= np.exp(-(t[held:] - t[held]) / (inst.release / 4))
    gain = (velocity / 127) ** 1.6 * 0.3 * inst.gain
    return (wave * env * gain).astype(np.float32)


def _drum_kit(sr: int, rng: np.random.Generator) -> dict[int, np.ndarray]:
    def noise(seconds: float) -> np.ndarray:
        return rng.standard_normal(int(seconds * sr)).astype(np.float32)

    def env(n: int, tau: float) -> np.ndarray:
        return np.exp(-np.arange(n) / sr / tau).astype(np.float32)

    def sweep(f0: float, f1: float, seconds: float, tau: float) -> np.ndarray:
        n = int(seconds * sr)
        t = np.arange(n) / sr
        f = f1 + (f0 - f1) * np.exp(-t / 0.04)
        return (np.sin(2 * np.pi * np.cumsum(f) / sr) * env(n, tau)).astype(np.float32)

    def band(x: np.ndarray, lo: float, hi: float | None = None) -> np.ndarray:
        kind, hz = ("bandpass", (lo, hi)) if hi else ("highpass", lo)
        return signal.sosfilt(signal.butter(2, hz, kind, fs=sr, output="sos"), x)

    kick = sweep(130, 48, 0.45, 0.16) * 1.2
    snare_n = noise(0.25)
    snare = (
        band(snare_n, 1200, 9000) * env(len(snare_n), 0.06) * 0.7
        + np.pad(sweep(240, 180, 0.12, 0.04), (0, len(snare_n) - int(0.12 * sr))) * 0.5
    )
    clap_n = noise(0.2)
    clap_env = env(len(clap_n), 0.05)
    for k in (1, 2):  # a clap is several hands a few milliseconds apart
        clap_env[: int(k * 0.011 * sr)] *= 0.6
    clap = band(clap_n, 900, 5000) * clap_env
    hat = band(noise(0.06), 7000) * env(int(0.06 * sr), 0.015) * 0.5
    open_hat = band(noise(0.35), 6500) * env(int(0.35 * sr), 0.1) * 0.45
    metal_t = np.arange(int(1.2 * sr)) / sr
    metal = sum(np.sign(np.sin(2 * np.pi * f * metal_t)) for f in (312, 440, 587, 743, 1001))
    ride = (band(metal * 0.2 + noise(1.2) * 0.3, 4000) * env(len(metal_t), 0.4)) * 0.25
    shaker_n = noise(0.08)
    shaker = band(shaker_n, 5000, 12000) * np.hanning(len(shaker_n)) * 0.35
    rim = band(noise(0.03), 2000, 6000) * env(int(0.03 * sr), 0.006) * 0.8
    crash = band(noise(1.8), 3000) * env(int(1.8 * sr), 0.6) * 0.3
    kit = {
        c.KICK: kick,
        c.SNARE: snare,
        c.CLAP: clap,
        c.CLOSED_HAT: hat,
        c.PEDAL_HAT: hat * 0.7,
        c.OPEN_HAT: open_hat,
        c.RIDE: ride,
        c.RIDE_BELL: ride,
        c.SHAKER: shaker,
        c.RIM: rim,
        c.CRASH: crash,
        c.LOW_TOM: sweep(110, 80, 0.4, 0.15),
        c.MID_TOM: sweep(150, 110, 0.35, 0.12),
        c.HIGH_TOM: sweep(200, 150, 0.3, 0.1),
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in kit.items()}


def render(score: Score, frames: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Render `frames` samples of the score, mono float32 (dry, unnormalized)."""
    out = np.zeros(frames + sr * 4, dtype=np.float32)
    instruments = {
        i: _instrument(p.program) for i, p in enumerate(score.parts) if p.channel != c.DRUM_CHANNEL
    }
    # CC7 is a square law in FluidSynth; drums get half of it, because the drum volumes
    # compensate for how loud each SoundFont kit is, and this kit is always the same.
    volumes = [
        (p.volume / 127) ** (1 if p.channel == c.DRUM_CHANNEL else 2)
        * (0.5 if p.channel == c.DRUM_CHANNEL else 1.0)
        for p in score.parts
    ]
    kit = None
    for note in score.notes:
        start = int(round(note.start * sr))
        if start >= frames:
            continue
        if note.part not in instruments:
            kit = kit if kit is not None else _drum_kit(sr, rng)
            sample = kit.get(note.pitch)
            if sample is None:
                continue
            wave = sample * (note.velocity / 127) ** 1.5 * 0.5
        else:
            wave = _note(instruments[note.part], note.pitch, note.duration, note.velocity, sr, rng)
        end = min(start + len(wave), len(out))
        out[start:end] += wave[: end - start] * volumes[note.part]
    return out[:frames]
