"""Suspend-like stalls: the daemon is SIGSTOPped for 5 s and continued. It resumes
playing without a burst (no level overload, no catch-up of the lost time) and without
a crash; the control socket answers again at once."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tests.audio_checks import silent_blocks
from tests.audio_servers import RATE
from tests.faults.conftest import assert_no_gap, fault_config, start_daemon

pytestmark = pytest.mark.slow
STALL = 5.0


def test_sigstop_sigcont_through_pulse(pulse_server, tmp_path):
    cfg = fault_config(tmp_path / "unused.wav", playback={"min_play": 3600})
    cfg["output"] = {"backend": "pulse", "sink": pulse_server.sink}
    d = start_daemon(tmp_path, cfg, {"PULSE_SERVER": pulse_server.server})
    try:
        rec = pulse_server.start_recording()
        # A whole loop and more before the stall: its peak and steps are the reference.
        time.sleep(max(2.0, d.status()["loop"]["seconds"] + 1.0))
        stop_at = rec.frames_so_far()
        d.signal(signal.SIGSTOP)
        time.sleep(STALL)
        cont_at = rec.frames_so_far()
        d.signal(signal.SIGCONT)
        assert d.ok("ping").strip() == "pong"
        time.sleep(4.0)
        x = rec.stop()
        assert d.proc.poll() is None
        before = x[RATE // 2 : stop_at]
        assert_no_gap(before, "before the stall")
        # The stall itself may be silent (nothing was written); the first sound after it:
        after = x[cont_at - RATE // 2 :]
        loud = np.flatnonzero(np.abs(after[:, 0]) > 1e-3)
        assert loud.size, "no sound after SIGCONT"
        resumed = after[loud[0] :]
        assert len(resumed) > 3 * RATE
        assert_no_gap(resumed[:-4800], "after the stall")
        # No burst: no level beyond what played before, no step at or after the resume.
        peak_before = np.abs(before).max()
        assert np.abs(resumed).max() <= 1.1 * peak_before, (np.abs(resumed).max(), peak_before)
        # The server ran dry while we were stopped; the player saw the pause between its
        # writes and ramps the sound back in from zero: no step where it resumes.
        first_ms = np.abs(resumed[: RATE // 1000]).max()
        assert first_ms <= 0.1 * peak_before, (first_ms, peak_before)
        # Real time, not catch-up: what played after the resume is not a fast-forward.
        quiet = silent_blocks(x[stop_at : cont_at + RATE])
        assert len(quiet) * 5 / 1000 <= STALL + 1.0
        st = d.status()
        assert st["state"] == "playing" and st["output_ok"]
        assert st["stalls"] >= 1, st
        assert "held up" in d.log() and "Traceback" not in d.log()
    finally:
        d.signal(signal.SIGCONT)
        d.stop()
        d.close()


def test_sigstop_sigcont_file_output_no_burst(tmp_path):
    d = start_daemon(tmp_path, fault_config(tmp_path / "out.wav", playback={"min_play": 3600}))
    try:
        time.sleep(1.0)
        d.signal(signal.SIGSTOP)
        time.sleep(STALL)
        n0 = d.frames()
        t0 = time.monotonic()
        d.signal(signal.SIGCONT)
        assert d.ok("ping").strip() == "pong"
        time.sleep(1.0)
        written = d.frames() - n0
        wall = time.monotonic() - t0
        # A burst would write the 5 s lost to the stall at once.
        assert written <= (wall + 0.5) * RATE, (written / RATE, wall)
        assert_no_gap(d.samples()[n0:], "after the stall")
        assert d.proc.poll() is None
    finally:
        d.signal(signal.SIGCONT)
        d.stop()
        d.close()
