"""The null output: discards audio, paced in real time."""

from __future__ import annotations

import numpy as np

from infiniloopd.outputs.pacing import Pacer


class NullOutput:
    """Discards everything at the speed a sound card would consume it."""

    name = "null"

    def __init__(self, *, reason: str | None = None) -> None:
        self.reason = reason
        self.xruns = 0
        self.paced = True
        self._pacer: Pacer | None = None
        self._rate = 0

    def open(self, rate: int, channels: int) -> None:
        self._rate = rate
        self._pacer = Pacer(rate)

    def write(self, frames: np.ndarray) -> None:
        if self._pacer is None:
            raise RuntimeError("null output is not open")
        self._pacer.wait(int(frames.shape[0]))

    def close(self) -> None:
        self._pacer = None

    def describe(self) -> str:
        text = "null: audio discarded"
        return f"{text} ({self.reason})" if self.reason else text
