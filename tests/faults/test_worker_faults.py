"""The analyzer worker is SIGKILLed: it is restarted and the pipeline goes on; playback
has no gap and the control socket answers throughout."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import (
    Pinger,
    assert_no_gap,
    events,
    fault_config,
    request,
    start_daemon,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("worker")
    cfg = fault_config(root / "out.wav", playback={"min_play": 3600})
    d = start_daemon(root, cfg)
    try:
        yield d
    finally:
        d.stop()
        d.close()


def worker_pid(d) -> int:
    pid = d.json("status", "-v")["worker_pid"]
    assert isinstance(pid, int) and pid > 0
    return pid


def new_worker_pid(d, old: int, timeout: float = 15.0) -> int:
    """The replacement worker's pid: the daemon revives a dead worker on its own."""
    deadline = time.monotonic() + timeout
    while True:
        pid = d.json("status", "-v")["worker_pid"]
        if isinstance(pid, int) and pid > 0 and pid != old:
            return pid
        assert time.monotonic() < deadline, f"no new analyzer worker\n{d.log()[-3000:]}"
        time.sleep(0.1)


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(x) for x in text}
    return found


def wait_loop_ready(d, mark: int, timeout: float = 40.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = events(d, mark, "loop_ready")
        if ready:
            return ready[0]
        time.sleep(0.2)
    raise AssertionError(f"no loop_ready after the worker was killed\n{d.log()[-3000:]}")


@pytest.mark.parametrize("when", ["idle", "analysing"])
def test_worker_killed_is_restarted(daemon, when):
    pid = worker_pid(daemon)
    assert pid in children(daemon.proc.pid)  # it is the daemon's own child
    st = daemon.status()
    mark, loop_id = st["last_seq"], st["loop"]["id"]
    start = daemon.frames()
    with Pinger(daemon) as pinger:
        if when == "idle":
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            daemon.ok("prompt", "after the worker died")
        else:
            daemon.ok("prompt", "worker dies while analysing")
            # Kill it as soon as the clip is handed to it (the phase says so). A warm
            # analysis lasts ~0.2 s: poll on the socket itself, not through a new
            # infiniloopctl process (~0.1 s each under load), or the phase is missed.
            status = {"v": 1, "cmd": "status", "args": {}}
            deadline = time.monotonic() + 30
            while request(daemon, status)["result"]["phase"] != "analysing":
                assert time.monotonic() < deadline, "never saw the analysing phase"
                time.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
        ready = wait_loop_ready(daemon, mark)
    pinger.check()
    assert ready["data"]["prompt"] in ("after the worker died", "worker dies while analysing")
    new = new_worker_pid(daemon, pid)
    assert Path(f"/proc/{new}").exists()
    assert new in children(daemon.proc.pid)
    st = daemon.status()
    assert st["state"] == "playing"
    # The new prompt's loop took over (crossfade) or the old one still plays: never silence.
    assert st["loop"]["id"] in (loop_id, ready["data"]["id"])
    time.sleep(0.3)
    assert_no_gap(daemon.samples()[start:], f"worker killed ({when})")
    assert "Traceback" not in daemon.log()
