"""Real-time pacing for outputs that have no sound card to block on (file, null)."""

from __future__ import annotations

import time


class Pacer:
    """Blocks a writer so that frames leave at the sample rate, like a sound card would.

    The schedule is kept as an integer frame count from one start time, so it never
    drifts however long it runs. Up to `lead` seconds may be written ahead (a sound
    card's buffer); after a stall longer than `resync` seconds (suspend, debugger)
    the schedule restarts instead of rushing to catch up.
    """

    def __init__(self, rate: int, *, lead: float = 0.05, resync: float = 1.0) -> None:
        self.rate = rate
        self.lead = lead
        self.resync = resync
        self._start = time.monotonic()
        self._frames = 0

    def wait(self, frames: int) -> None:
        """Account for `frames` more frames and sleep until they are due."""
        self._frames += frames
        due = self._start + self._frames / self.rate - self.lead
        now = time.monotonic()
        if now - due > self.resync:
            self._start = now - self._frames / self.rate + self.lead
            return
        if due > now:
            time.sleep(due - now)
