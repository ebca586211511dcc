"""Cut the loop out of the clip with its seam crossfade baked in."""

from __future__ import annotations

import numpy as np

from .errors import AnalysisError
from .loop import DEFAULT_CROSSFADE_MS, LoopPoints


def crossfade_gains(n: int, correlation: float) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in and fade-out gains of n samples that keep the level for this correlation.

    Linear gains keep the level of identical (correlation 1) signals, equal-power gains
    that of unrelated ones (0); in between, linear gains scaled by
    1/sqrt(a^2 + b^2 + 2 r a b) keep the expected power constant, so the seam neither
    dips nor swells. The same holds for negative correlations (partly cancelling
    signals get a boost in mid-fade); they are clipped at -0.5, a boost of at most 6 dB.
    """
    r = float(np.clip(correlation, -0.5, 1.0))
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    a, b = t, 1.0 - t
    g = 1.0 / np.sqrt(a * a + b * b + 2.0 * r * a * b)
    return (a * g).astype(np.float32), (b * g).astype(np.float32)


def _correlation(p: np.ndarray, q: np.ndarray) -> float:
    p = p.astype(np.float64).ravel()
    q = q.astype(np.float64).ravel()
    den = np.sqrt(float(p @ p) * float(q @ q))
    return float(p @ q) / den if den > 0 else 0.0


def render_loop(
    y: np.ndarray,
    sr: int,
    points: LoopPoints,
    *,
    crossfade_ms: float = DEFAULT_CROSSFADE_MS,
) -> np.ndarray:
    """The audio that repeats: y[start:end] with the seam crossfade baked in.

    Returns exactly end - start frames, float32, in y's layout. The first crossfade_ms
    blend the audio that followed `end` in the clip into the start, so that playing the
    result over and over is continuous. If the clip has too little audio after `end`,
    the audio before `start` is blended into the end instead; failing both, the fade is
    shortened to what there is.
    """
    a = np.asarray(y, dtype=np.float32)
    n = a.shape[0]
    start, end = int(points.start), int(points.end)
    if not 0 <= start < end <= n:
        raise AnalysisError(f"loop {start}..{end} does not lie within the {n} frames of audio")
    out = a[start:end].copy()
    length = end - start
    want = min(int(round(crossfade_ms * 1e-3 * sr)), length // 2)
    after = min(want, n - end)
    before = min(want, start)
    xf = max(after, before)
    if xf < 2:
        return out
    shape = (-1,) + (1,) * (a.ndim - 1)
    if after >= before:
        # head: continuation after the end fades out while the loop's own start fades in
        incoming, outgoing = a[start : start + xf], a[end : end + xf]
        g_in, g_out = crossfade_gains(xf, _correlation(incoming, outgoing))
        out[:xf] = incoming * g_in.reshape(shape) + outgoing * g_out.reshape(shape)
    else:
        # tail: the end fades into the audio that preceded the start
        outgoing, incoming = a[end - xf : end], a[start - xf : start]
        g_in, g_out = crossfade_gains(xf, _correlation(incoming, outgoing))
        out[-xf:] = incoming * g_in.reshape(shape) + outgoing * g_out.reshape(shape)
    return out


def rotate_loop(loop: np.ndarray, rotation: int) -> np.ndarray:
    """The loop started `rotation` frames later: a circular shift, the seam kept intact.

    A rendered loop is continuous across its wrap, so starting it elsewhere (on its
    first downbeat) moves the baked seam inside the buffer without changing a sample.
    """
    a = np.asarray(loop)
    if a.shape[0] == 0:
        return a
    r = int(rotation) % a.shape[0]
    return np.ascontiguousarray(np.concatenate([a[r:], a[:r]])) if r else a
