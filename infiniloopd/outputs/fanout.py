"""Several outputs at once: one player, each output on its own thread with its own buffer.

The player writes each block into this one `Output`; every configured output gets a
copy in a bounded queue that its own thread drains. The first output is the local
one: while it takes audio, its device clock paces the player exactly as a single
output would (the player waits for room in its short queue). If it stalls or fails,
pacing falls back to the monotonic clock so the others keep getting audio in real
time. Any output that fails is closed and reopened on its own thread with backoff;
one that falls behind loses blocks (counted as drops) instead of holding anyone up.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from infiniloopd.outputs.base import Output, OutputError

log = logging.getLogger(__name__)

# Blocks the local output may hold queued before the player waits: its extra latency.
PACE_DEPTH = 3
# Seconds of audio any output may hold queued before new blocks are dropped for it.
QUEUE_SECONDS = 1.0
# How long the player waits for room at the local output before pacing by the clock.
# Below the local buffer, so the player never mistakes that wait for its own stall.
STEADY_WAIT = 0.15
# Until the local output plays steadily: a sound server may hold its first writes
# while the sink wakes up (a PulseAudio null sink: up to 2 s).
START_WAIT = 2.5
BACKOFF_START = 0.25
BACKOFF_MAX = 5.0
# A write this much longer than the output's buffer means that device ran dry.
STALL_MARGIN = 0.05
STALL_PAD_SECONDS = 0.06


@dataclass(frozen=True)
class OutputState:
    """One output as `status -v` shows it."""

    name: str
    description: str
    state: str  # "ok" | "starting" | "failed" | "stalled"
    underruns: int  # blocks dropped for it, device xruns and stalls
    error: str | None


class _Worker:
    """One output, its bounded queue of blocks and the thread that writes them."""

    def __init__(self, output: Output, rate: int, channels: int, block_frames: int) -> None:
        self.output = output
        self.rate = rate
        self.channels = channels
        self.capacity = max(PACE_DEPTH + 1, round(QUEUE_SECONDS * rate / block_frames))
        self.queue: collections.deque[np.ndarray] = collections.deque()
        self.cond = threading.Condition()
        self.opened = False
        self.failed = False
        self.error: str | None = None
        self.drops = 0
        self.stalls = 0
        self.written_frames = 0
        self.in_write_since: float | None = None
        self.closing = False
        self.discard_requested = False
        self._backoff = BACKOFF_START
        self._retry_at = 0.0
        self._fade_next = False
        self.thread = threading.Thread(
            target=self._run, name=f"infiniloop-out-{output.name}", daemon=True
        )

    # --- the player's side -------------------------------------------------------

    def offer(self, block: np.ndarray) -> bool:
        """Queue `block` unless the queue is full (then it is dropped and counted)."""
        with self.cond:
            if len(self.queue) >= self.capacity:
                if self.opened:  # while it is down, nothing is owed to it
                    self.drops += 1
                return False
            self.queue.append(block)
            self.cond.notify()
            return True

    def put_wait(self, block: np.ndarray, timeout: float) -> bool:
        """Queue `block` once fewer than PACE_DEPTH blocks wait; False after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.queue) >= PACE_DEPTH:
                left = deadline - time.monotonic()
                if left <= 0 or self.failed or not self.opened:
                    return False
                self.cond.wait(left)
            self.queue.append(block)
            self.cond.notify()
            return True

    @property
    def ready(self) -> bool:
        """Open and not failing: its device can pace the player."""
        return self.opened and not self.failed

    @property
    def steady(self) -> bool:
        limit = getattr(self.output, "buffer_seconds", 0.2) or 0.2
        return self.written_frames >= 2 * limit * self.rate

    def state(self) -> OutputState:
        since = self.in_write_since
        buffer = getattr(self.output, "buffer_seconds", None) or 0.5
        if self.failed:
            state = "failed"
        elif not self.opened:
            state = "starting"
        elif since is not None and time.monotonic() - since > buffer + STALL_MARGIN:
            state = "stalled"
        else:
            state = "ok"
        underruns = self.drops + self.stalls + int(getattr(self.output, "xruns", 0))
        return OutputState(self.output.name, _describe(self.output), state, underruns, self.error)

    # --- the output's thread -----------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait(0.5)
                if self.closing:
                    break
                if not self.opened:
                    # Audio queued while the output was down is stale: drop it.
                    self.queue.clear()
                    self.cond.notify_all()
                    block = None
                else:
                    block = self.queue.popleft()
                    self.cond.notify_all()
            if block is None:
                self._reopen_when_due()
                continue
            self._write(block)
        self._close()

    def _write(self, block: np.ndarray) -> None:
        if self.discard_requested:
            self.discard_requested = False
            discard = getattr(self.output, "discard", None)
            if discard is not None:
                discard()
        if self._fade_next:
            self._fade_next = False
            block = block * np.linspace(0.0, 1.0, len(block), dtype=np.float32)[:, None]
        started = time.monotonic()
        self.in_write_since = started
        try:
            self.output.write(block)
        except Exception as exc:
            self.in_write_since = None
            self._fail(exc)
            return
        self.in_write_since = None
        took = time.monotonic() - started
        limit = getattr(self.output, "buffer_seconds", None)
        if limit is not None and self.steady and took > limit + STALL_MARGIN:
            self._ran_dry(took, limit)
        self.written_frames += len(block)
        if self.failed:
            log.info("output recovered: %s", _describe(self.output))
        self.failed = False
        self.error = None
        self._backoff = BACKOFF_START

    def _ran_dry(self, took: float, limit: float) -> None:
        """The device stalled longer than it buffers: drop what went stale, fade in again."""
        self.stalls += 1
        log.warning(
            "%s was held up %.2f s (it holds %.2f s); fading back in", self.output.name, took, limit
        )
        discard = getattr(self.output, "discard", None)
        if discard is not None:
            discard()
        with self.cond:
            self.drops += len(self.queue)
            self.queue.clear()
            self.cond.notify_all()
        # A server that ran dry skips the start of what comes next: pad with silence.
        pad = np.zeros((max(1, int(STALL_PAD_SECONDS * self.rate)), self.channels), np.float32)
        try:
            self.output.write(pad)
        except Exception as exc:
            self._fail(exc)
            return
        self._fade_next = True

    def _fail(self, exc: Exception) -> None:
        message = str(exc) or type(exc).__name__
        if not self.failed:
            log.warning("output failed: %s (retrying on its own)", message)
            self._backoff = BACKOFF_START
        else:
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        self.failed = True
        self.error = message
        self._close()
        self._retry_at = time.monotonic() + self._backoff

    def _reopen_when_due(self) -> None:
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            with self.cond:
                if not self.closing:
                    self.cond.wait(min(wait, 0.5))
            return
        try:
            self.output.open(self.rate, self.channels)
        except Exception as exc:
            self._fail(exc)
            return
        self.opened = True
        self.written_frames = 0
        self._fade_next = True

    def _close(self) -> None:
        if not self.opened:
            return
        with self.cond:
            self.opened = False
            self.cond.notify_all()
        try:
            self.output.close()
        except Exception as exc:
            log.debug("closing %s failed: %s", self.output.name, exc)


class FanoutOutput:
    """Plays to several outputs at once; the first one (the local device) paces."""

    name = "fanout"

    def __init__(self, outputs: list[Output], *, block_ms: float = 20.0) -> None:
        if len(outputs) < 2:
            raise ValueError("a fan-out needs at least two outputs")
        self.outputs = list(outputs)
        self.block_ms = block_ms
        self.paced = True
        first = getattr(outputs[0], "buffer_seconds", None)
        # What the local device holds plus its queue: a longer pause makes it run dry.
        self.buffer_seconds = None if first is None else first + PACE_DEPTH * block_ms / 1000
        self._workers: list[_Worker] = []
        self._rate = 0
        self._clock_start = 0.0
        self._clock_frames = 0
        self._by_clock = False
        self._last_paced = 0.0

    @property
    def xruns(self) -> int:
        return sum(w.state().underruns for w in self._workers)

    def open(self, rate: int, channels: int) -> None:
        """Open every output; raise only if none opens (the others retry on their own)."""
        self.close()
        self._rate = rate
        block = max(16, round(rate * self.block_ms / 1000.0))
        workers = [_Worker(out, rate, channels, block) for out in self.outputs]
        errors: list[Exception] = []
        for w in workers:
            try:
                w.output.open(rate, channels)
                w.opened = True
            except Exception as exc:
                errors.append(exc)
                w._fail(exc)
        if len(errors) == len(workers):
            raise errors[0] if isinstance(errors[0], OutputError) else OutputError(str(errors[0]))
        for w in workers:
            w.thread.start()
        self._workers = workers
        self._by_clock = not workers[0].ready
        self._clock_start = time.monotonic()
        self._clock_frames = 0
        self._last_paced = time.monotonic()

    def write(self, frames: np.ndarray) -> None:
        if not self._workers:
            raise OutputError("fanout: outputs are not open")
        block = np.array(frames, dtype=np.float32, copy=True)  # the player reuses its buffer
        local, others = self._workers[0], self._workers[1:]
        for w in others:
            w.offer(block)
        n = len(block)
        if local.ready:
            wait = STEADY_WAIT if local.steady else START_WAIT
            if self._by_clock:
                # Back from a stall or failure: take its clock again once it has room.
                if local.put_wait(block, 0.0):
                    self._by_clock = False
                    self._last_paced = time.monotonic()
                    return
                local.offer(block)
            elif local.put_wait(block, wait):
                self._last_paced = time.monotonic()
                return
            else:
                log.warning("%s is not taking audio: pacing by the clock", local.output.name)
                self._by_clock = True
                # Continue the schedule from when the device last took audio, so the
                # others catch up on the time spent waiting.
                self._clock_start = self._last_paced
                self._clock_frames = 0
                local.offer(block)
        else:
            if not self._by_clock:
                self._by_clock = True
                self._clock_start = time.monotonic()
                self._clock_frames = 0
            local.offer(block)
        self._pace_by_clock(n)

    def _pace_by_clock(self, frames: int) -> None:
        self._clock_frames += frames
        due = self._clock_start + self._clock_frames / self._rate
        now = time.monotonic()
        if now - due > 1.0:  # suspended: restart the schedule, do not rush
            self._clock_start = now - self._clock_frames / self._rate
        elif due > now:
            time.sleep(due - now)

    def discard(self) -> None:
        """The player was held up until the local device ran dry: let it drop what it holds."""
        if self._workers:
            self._workers[0].discard_requested = True

    def set_metadata(self, title: str) -> None:
        for out in self.outputs:
            setter = getattr(out, "set_metadata", None)
            if setter is not None:
                setter(title)

    def states(self) -> list[OutputState]:
        return [w.state() for w in self._workers] or [
            OutputState(o.name, _describe(o), "closed", 0, None) for o in self.outputs
        ]

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for w in workers:
            with w.cond:
                w.closing = True
                w.cond.notify_all()
        for w in workers:
            if w.thread.is_alive():
                w.thread.join(3.0)
                if w.thread.is_alive():
                    log.warning("%s did not stop within 3 s (blocked?)", w.output.name)
            else:
                w._close()

    def describe(self) -> str:
        return " + ".join(_describe(o) for o in self.outputs)


def _describe(output: Output) -> str:
    try:
        return output.describe()
    except Exception as exc:
        return f"{getattr(output, 'name', 'output')}: ({exc})"
