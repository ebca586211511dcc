"""Frame-level features (log-mel, chroma, MFCC, onset envelope) in plain numpy.

librosa would do the same, but its first call costs seconds of numba compilation or
cache loading; these few transforms are cheap to write and keep the analyzer's
warm-up well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

ANALYSIS_RATE = 16000
N_FFT = 1024
HOP = 128  # 8 ms at 16 kHz
N_MELS = 64
N_MFCC = 13


@dataclass(frozen=True)
class Frames:
    """Frame-level features of a mono signal at ANALYSIS_RATE, one column per hop."""

    logmel: np.ndarray  # (n_mels, T) dB, floored 80 dB below the max
    chroma: np.ndarray  # (12, T) L2-normalised per frame
    mfcc: np.ndarray  # (N_MFCC, T) without the 0th (level) coefficient
    level_db: np.ndarray  # (T,) frame RMS in dBFS
    onset: np.ndarray  # (T,) half-wave rectified spectral flux, unit std
    onset_low: np.ndarray  # (T,) the same below ~200 Hz (kick and bass: bar accents)
    hop_seconds: float


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=4)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 30.0) -> np.ndarray:
    """Triangular mel filters, (n_mels, n_fft//2+1), each filter summing to one."""
    fmax = sr / 2.0
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - freqs[None, :]) / np.maximum(hi - mid, 1e-9)
    w = np.maximum(0.0, np.minimum(up, down))
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return w.astype(np.float32)


@lru_cache(maxsize=4)
def chroma_filterbank(sr: int, n_fft: int) -> np.ndarray:
    """Pitch-class weights (12, n_fft//2+1) for bins between 55 Hz and 4.2 kHz."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    w = np.zeros((12, freqs.size), dtype=np.float32)
    ok = (freqs >= 55.0) & (freqs <= 4200.0)
    midi = 69.0 + 12.0 * np.log2(freqs[ok] / 440.0)
    pc = np.arange(12)[:, None]
    # circular distance in semitones to each pitch class, soft triangular weight
    d = np.abs(((midi[None, :] - pc) + 6.0) % 12.0 - 6.0)
    w[:, ok] = np.maximum(0.0, 1.0 - d)
    return w


@lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def power_spectrogram(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """|STFT|^2 of a centred, zero-padded Hann STFT: (n_fft//2+1, T), T = len//hop + 1."""
    pad = n_fft // 2
    xp = np.pad(np.asarray(x, dtype=np.float32), (pad, pad))
    n_frames = 1 + (xp.size - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        xp, shape=(n_frames, n_fft), strides=(xp.strides[0] * hop, xp.strides[0]), writeable=False
    )
    spec = scipy.fft.rfft(frames * _window(n_fft), axis=1, workers=1)
    return (spec.real**2 + spec.imag**2).T.astype(np.float32)


def frame_features(x: np.ndarray, sr: int = ANALYSIS_RATE) -> Frames:
    """All frame-level features of mono x (sampled at sr, normally ANALYSIS_RATE)."""
    S = power_spectrogram(x)
    mel = mel_filterbank(sr, N_FFT, N_MELS) @ S
    logmel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    logmel = np.maximum(logmel, logmel.max() - 80.0)

    # onset strength: mean positive log-mel rise over ~2 hops, then a local-mean high-pass
    rise = np.zeros_like(logmel)
    rise[:, 2:] = logmel[:, 2:] - logmel[:, :-2]
    pos = np.maximum(rise, 0.0)
    onset = _highpass_unit(pos.mean(axis=0))
    # bar accents: the rise of the total energy below 200 Hz (a kick adds energy there;
    # a bass line moving from note to note mostly does not)
    low = _mel_hz(sr) < 200.0
    if low.any():
        low_db = 10.0 * np.log10(np.maximum(mel[low].sum(axis=0), 1e-10))
        low_rise = np.zeros_like(low_db)
        low_rise[2:] = np.maximum(low_db[2:] - low_db[:-2], 0.0)
        onset_low = _highpass_unit(low_rise)
    else:
        onset_low = onset

    chroma = chroma_filterbank(sr, N_FFT) @ np.sqrt(S)
    chroma /= np.maximum(np.linalg.norm(chroma, axis=0, keepdims=True), 1e-9)

    mfcc = scipy.fft.dct(logmel, type=2, axis=0, norm="ortho")[1 : N_MFCC + 1]

    # Parseval: frame energy from the Hann-windowed spectrum (window power mean 3/8)
    energy = S.sum(axis=0) * 2.0 / (N_FFT * N_FFT * 0.375)
    level_db = 10.0 * np.log10(np.maximum(energy, 1e-12))
    return Frames(
        logmel,
        chroma,
        mfcc,
        level_db,
        onset.astype(np.float32),
        onset_low.astype(np.float32),
        HOP / sr,
    )


def _highpass_unit(env: np.ndarray) -> np.ndarray:
    """Envelope minus its ~0.25 s local mean, half-wave rectified, scaled to unit std."""
    k = 33
    local = np.convolve(env, np.ones(k) / k, mode="same")
    out = np.maximum(env - local, 0.0)
    sd = out.std()
    return out / sd if sd > 0 else out


def _mel_hz(sr: int) -> np.ndarray:
    """Centre frequency of each mel band of mel_filterbank(sr, N_FFT, N_MELS)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(30.0), _hz_to_mel(sr / 2.0), N_MELS + 2))
    return edges[1:-1]
