"""Float32 to 16-bit conversion into buffers that are reused from block to block."""

from __future__ import annotations

import numpy as np


class S16Converter:
    """Converts float32 (frames, channels) blocks to interleaved int16 without allocating."""

    def __init__(self, channels: int, max_frames: int = 8192) -> None:
        self.channels = channels
        self._grow(max_frames)

    def _grow(self, frames: int) -> None:
        self._f = np.empty((frames, self.channels), dtype=np.float32)
        self._i = np.empty((frames, self.channels), dtype=np.int16)

    def convert(self, frames: np.ndarray) -> np.ndarray:
        """Return an int16 view (valid until the next call) of `frames` scaled to 16 bits."""
        n = frames.shape[0]
        if n > self._f.shape[0]:
            self._grow(n)
        f = self._f[:n]
        np.multiply(frames, 32767.0, out=f)
        np.rint(f, out=f)
        np.clip(f, -32768.0, 32767.0, out=f)
        out = self._i[:n]
        np.copyto(out, f, casting="unsafe")
        return out
