"""The player thread's own behaviour: failure episodes, commands during backoff, status."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from infiniloopd.outputs.base import OutputError
from infiniloopd.outputs.pacing import Pacer
from infiniloopd.player import Player

RATE = 8000


class FlakyOutput:
    """A real-time paced output whose writes (and reopens) fail while `broken` is set."""

    name = "flaky"

    def __init__(self) -> None:
        self.broken = threading.Event()
        self.paced = True
        self.opens = 0
        self.frames = 0
        self._pacer: Pacer | None = None

    def open(self, rate: int, channels: int) -> None:
        if self.broken.is_set():
            raise OutputError("flaky: still broken")
        self.opens += 1
        self._pacer = Pacer(rate, lead=0.0)

    def write(self, frames: np.ndarray) -> None:
        if self.broken.is_set() or self._pacer is None:
            raise OutputError("flaky: gone")
        self.frames += frames.shape[0]
        self._pacer.wait(frames.shape[0])

    def close(self) -> None:
        self._pacer = None

    def describe(self) -> str:
        return "flaky: test output"


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_output_failure_is_one_episode_position_kept_commands_served(caplog):
    out = FlakyOutput()
    events: list[tuple[str, dict]] = []
    player = Player(out, rate=RATE, channels=2, on_event=lambda n, d: events.append((n, d)))
    player.start()
    try:
        player.play_loop("x", np.full((RATE, 2), 0.1, np.float32), 0.0)
        time.sleep(0.3)
        with caplog.at_level(logging.DEBUG, logger="infiniloopd.player.engine"):
            out.broken.set()
            wait_until(lambda: not player.status().output_ok)
            played = player.status().played
            player.set_volume(0.3)  # served while the output is down
            player.pause()
            time.sleep(1.2)  # several retries with backoff
            down = player.status()
            down_at = time.monotonic()
            started = time.monotonic()
            player.fade_out(0.5)  # must not wait for a dead output
            assert time.monotonic() - started < 0.5
            out.broken.clear()
            player.resume()
            wait_until(lambda: player.status().output_ok)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "flaky: gone" in warnings[0].getMessage()
        assert down.played == pytest.approx(played, abs=0.03)
        assert down.volume == 0.3 and down.state == "paused" and player.alive
        assert down_at - down.heartbeat < 0.3  # the thread kept beating while down
        names = [n for n, _ in events]
        assert names.count("output_error") == 1 and names.count("output_recovered") == 1
        assert out.opens >= 2
    finally:
        player.close()
    assert not player.alive


def test_event_handler_errors_do_not_stop_the_audio(caplog):
    def bad_handler(name: str, data: dict) -> None:
        raise RuntimeError("handler bug")

    out = FlakyOutput()
    player = Player(out, rate=RATE, channels=2, on_event=bad_handler)
    player.start()
    try:
        player.play_loop("x", np.full((RATE // 10, 2), 0.1, np.float32), 0.0)
        time.sleep(0.2)
        player.play_loop("y", np.full((RATE // 10, 2), 0.1, np.float32), 0.05)
        time.sleep(0.3)
        status = player.status()
    finally:
        player.close()
    assert status.key == "y" and not status.crossfading and status.output_ok
    assert out.frames > 0.4 * RATE
    assert "handler bug" in caplog.text


def test_status_reflects_commands_immediately_and_replace_output_keeps_position():
    first, second = FlakyOutput(), FlakyOutput()
    player = Player(first, rate=RATE, channels=2, volume=0.5)
    player.start()
    try:
        loop = np.full((RATE * 2, 2), 0.1, np.float32)
        player.play_loop("a", loop, 1.0)
        s = player.status()
        assert (s.key, s.state, s.loop_seconds, s.crossfading) == ("a", "playing", 2.0, False)
        time.sleep(0.5)
        before = player.status().position
        player.replace_output(second)
        wait_until(lambda: player.status().output == "flaky: test output" and second.frames > 0)
        after = player.status().position
        assert before <= after < before + 0.3
        player.pause()
        assert player.status().state == "paused"
        player.stop()
        s = player.status()
        assert s.state == "stopped" and s.key is None
    finally:
        player.close()
