"""Helpers shared by the fault-injection tests: the real daemon, what it played, its log.

Every module starts the real daemon as a subprocess (tests/daemon_proc.py) with short
clips and checks two things around each fault: the audio it played (the real-time WAV
of `output.backend: file`, or the PulseAudio null sink's monitor recorded by parec) has
no run of silent 5 ms blocks, and the control socket kept answering.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from tests.audio_checks import silent_blocks
from tests.audio_servers import RATE
from tests.daemon_proc import Daemon, base_config

ROOT = Path(__file__).resolve().parents[2]
FAKE_MUSICGPT = ROOT / "tests" / "fake_musicgpt.py"


def fault_config(out: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """base_config (synth, 6 s clips, real-time pcm16 WAV) with sections merged in."""
    cfg = base_config(out)
    cfg["playback"]["crossfade"] = 0.5
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def longest_silence_ms(x: np.ndarray, block_ms: float = 5.0) -> float:
    """The longest run of consecutive silent `block_ms` blocks in x, in ms."""
    if len(x) < RATE * block_ms / 1000:
        return 0.0
    idx = silent_blocks(x, block_ms)
    if idx.size == 0:
        return 0.0
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, idx.size - 1]
    return float((ends - starts + 1).max() * block_ms)


def assert_no_gap(x: np.ndarray, what: str, allowed_ms: float = 0.0) -> None:
    """No silent 5 ms block in x beyond `allowed_ms` in a row; x must hold real audio."""
    assert len(x) > RATE // 2, f"{what}: only {len(x)} frames recorded"
    gap = longest_silence_ms(x)
    assert gap <= allowed_ms, f"{what}: {gap:g} ms of silence in {len(x) / RATE:.1f} s"


class Pinger:
    """Pings the control socket every `period` s from a thread; records the round trips."""

    def __init__(self, d: Daemon, period: float = 0.25, timeout_ms: int = 2000) -> None:
        self.endpoint = f"ipc://{d.runtime}/control.sock"
        self.period = period
        self.timeout_ms = timeout_ms
        self.rtts: list[float] = []
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        ctx = zmq.Context()
        try:
            while not self._stop.wait(self.period):
                s = ctx.socket(zmq.REQ)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(self.endpoint)
                t0 = time.monotonic()
                s.send_json({"v": 1, "cmd": "ping", "args": {}})
                if s.poll(self.timeout_ms):
                    reply = json.loads(s.recv())
                    if reply.get("ok"):
                        self.rtts.append(time.monotonic() - t0)
                    else:
                        self.missed += 1
                else:
                    self.missed += 1
                s.close()
        finally:
            ctx.term()

    def check(self) -> None:
        assert self.rtts, "the pinger did not run"
        assert self.missed == 0, f"{self.missed} pings unanswered within {self.timeout_ms} ms"


def request(d: Daemon, msg: dict[str, Any], timeout_ms: int = 3000) -> dict[str, Any]:
    """One raw request on the control socket."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"ipc://{d.runtime}/control.sock")
    try:
        s.send_json(msg)
        assert s.poll(timeout_ms), f"no reply to {msg}"
        return json.loads(s.recv())
    finally:
        s.close()


def events(d: Daemon, since: int, name: str | None = None) -> list[dict[str, Any]]:
    reply = request(d, {"v": 1, "cmd": "events", "args": {"since": since}})
    assert reply["ok"], reply
    found = reply["result"]["events"]
    return [e for e in found if name is None or e["event"] == name]


def start_daemon(root: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> Daemon:
    d = Daemon(root, config)
    if env:
        d.env.update(env)
    try:
        d.start()
    except BaseException:
        d.close()
        raise
    return d


@pytest.fixture
def no_pwned():
    """Paths a shell injection would create; removed before and checked by the test."""
    paths = [Path("/tmp/infiniloop-pwned-1"), Path("/tmp/infiniloop-pwned-2")]
    for p in paths:
        p.unlink(missing_ok=True)
    yield paths
    for p in paths:
        p.unlink(missing_ok=True)
