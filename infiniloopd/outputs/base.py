"""The one small interface every output backend implements, and its error type."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from infiniloopd.errors import UserError


class OutputError(UserError):
    """An output cannot open or write right now (server gone, device busy or missing).

    The message is one line naming the backend and the device. The player treats it
    as possibly transient: it logs once, keeps its position and retries with backoff.
    """


class Output(Protocol):
    """Where rendered audio goes. `write` blocks, pacing the caller in real time."""

    name: str  # "pulse" | "alsa" | "file" | "null"
    # Optional `buffer_seconds: float`: how much audio a device still holds when `write`
    # returns. The player reads a longer pause between writes as the device having run
    # dry (an underrun) and fades back in. Outputs without a real-time device (file,
    # null) leave it out: a pause there loses nothing.

    def open(self, rate: int, channels: int) -> None: ...

    def write(self, frames: np.ndarray) -> None: ...  # float32 (n, channels)

    def close(self) -> None: ...

    def describe(self) -> str: ...
