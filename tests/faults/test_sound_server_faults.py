"""PulseAudio is SIGKILLed and restarted mid-play: the stream comes back on its own and
the daemon never exits; the same through the ALSA pulse-plugin PCM. What reaches the
null sink is recorded with parec and checked for gaps before and after."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.audio_checks import first_sound
from tests.faults.conftest import Pinger, assert_no_gap, fault_config, start_daemon

pytestmark = pytest.mark.slow


def recorded_sound(server, seconds: float) -> np.ndarray:
    rec = server.start_recording()
    time.sleep(seconds)
    x = rec.stop()
    assert np.abs(x).max() > 1e-3, "nothing reached the sink"
    return x[first_sound(x) :]


@pytest.mark.parametrize("backend", ["pulse", "alsa"])
def test_sound_server_killed_and_restarted(request, tmp_path, backend):
    server = request.getfixturevalue("pulse_server")
    env = {"PULSE_SERVER": server.server}
    if backend == "pulse":
        output = {"backend": "pulse", "sink": server.sink}
    else:
        alsa = request.getfixturevalue("alsa_env")
        env["HOME"] = alsa.env["HOME"]  # where .asoundrc defines pcm.testpulse
        output = {"backend": "alsa", "device": alsa.pulse_pcm}
    cfg = fault_config(tmp_path / "unused.wav", playback={"min_play": 3600})
    cfg["output"] = output
    d = start_daemon(tmp_path, cfg, env)
    try:
        assert_no_gap(recorded_sound(server, 2.0)[:-4800], f"{backend} before the kill")
        with Pinger(d) as pinger:
            server.kill()
            time.sleep(1.5)
            assert d.proc.poll() is None, d.log()[-2000:]
            assert d.ok("ping").strip() == "pong"
            server.restart()
            st = d.wait_status(lambda s: s["output_ok"], 20, "the output to come back")
            assert st["state"] == "playing"
            time.sleep(0.5)
        pinger.check()
        inputs = server.sink_inputs()
        assert len(inputs) >= 1  # the stream is back (through the plug-in, it is "ALSA ...")
        if backend == "pulse":
            assert any("infiniloop" in str(p).lower() for p in inputs), inputs
        x = recorded_sound(server, 3.0)
        assert_no_gap(x[:-4800], f"{backend} after the restart")
        assert d.proc.poll() is None
        assert "Traceback" not in d.log()
    finally:
        d.stop()
        d.close()
