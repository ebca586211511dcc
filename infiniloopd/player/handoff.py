"""Handing loops to the player, tempo-matched: the one path every transition takes.

The daemon and `infiniloopd record` both call `Handoff.hand`. When the incoming
loop's tempo is within `MAX_STRETCH` of the playing one, it is time-stretched first
in the event loop's executor (Rubber Band takes a few seconds; never on the audio
thread, never blocking the event loop), then handed over with its scaled grid. A
newer hand-off supersedes one still being stretched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from infiniloopd.errors import UserError
from infiniloopd.player.stretch import match_tempo, stretch_factor
from infiniloopd.player.transitions import loop_bpm

log = logging.getLogger(__name__)

# play(key, audio, crossfade, grid=..., bpm=...): Player.play_loop or Mixer.transition.
PlayFn = Callable[..., Any]


class Handoff:
    """Tracks the tempo that plays and hands each new loop over matched to it."""

    def __init__(self, play: PlayFn, rate: int, *, stretch: bool = True) -> None:
        self._play = play
        self.rate = rate
        self.stretch = stretch  # False: every loop at its own tempo
        self.playing_bpm: float | None = None
        self._token = 0
        self._busy: asyncio.Future | None = None
        # Called as on_deliver(key, audio, grid, bpm, stretched) after each delivery.
        self.on_deliver: Callable[..., None] | None = None

    @property
    def busy(self) -> bool:
        """True while a loop is being stretched (the hand-off has not reached the player)."""
        return self._busy is not None and not self._busy.done()

    async def wait(self) -> None:
        """Until the hand-off in progress (if any) has reached the player."""
        while self.busy:
            assert self._busy is not None
            await asyncio.wait({self._busy})

    def forget(self) -> None:
        """Nothing plays any more (stop): the next loop is matched to nothing."""
        self._token += 1
        self.playing_bpm = None
        if self._busy is not None and not self._busy.done():
            self._busy.set_result(None)

    def hand(
        self,
        key: str,
        audio: np.ndarray,
        crossfade: float,
        *,
        grid: dict | None,
        bpm: float | None,
    ) -> None:
        """Hand a loop over: now, or after stretching it in the executor."""
        self._token += 1
        token = self._token
        if self._busy is not None and not self._busy.done():
            self._busy.set_result(None)  # the one being stretched will never be delivered
        incoming = loop_bpm(grid, bpm, audio.shape[0], self.rate)
        factor = stretch_factor(self.playing_bpm, incoming) if self.stretch else None
        if factor is None:
            self._deliver(key, audio, crossfade, grid, bpm)
            return
        loop = asyncio.get_running_loop()
        target = self.playing_bpm
        fut = loop.run_in_executor(None, match_tempo, audio, grid, bpm, target, self.rate)
        delivered = self._busy = loop.create_future()

        def done(f: asyncio.Future) -> None:
            try:
                if token != self._token:
                    return  # superseded while stretching
                try:
                    out, new_grid, new_bpm = f.result()
                except UserError as exc:
                    log.warning("%s: playing %s at its own tempo", exc, key)
                    out, new_grid, new_bpm = audio, grid, bpm
                except Exception:
                    log.exception("time-stretch failed: playing %s at its own tempo", key)
                    out, new_grid, new_bpm = audio, grid, bpm
                self._deliver(key, out, crossfade, new_grid, new_bpm, out is not audio)
            finally:
                if not delivered.done():
                    delivered.set_result(None)

        fut.add_done_callback(done)

    def _deliver(
        self,
        key: str,
        audio: np.ndarray,
        crossfade: float,
        grid: Any,
        bpm: float | None,
        stretched: bool = False,
    ) -> None:
        self._play(key, audio, crossfade, grid=grid, bpm=bpm)
        self.playing_bpm = loop_bpm(grid, bpm, audio.shape[0], self.rate)
        if self.on_deliver is not None:
            self.on_deliver(key, audio, grid, bpm, stretched)
