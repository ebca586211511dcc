"""`infiniloopd play` into ALSA PCMs: the file plugin (exact samples) and the pulse plugin."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from tests.audio_checks import assert_tiles, first_sound, noise_loop
from tests.audio_servers import RATE

pytestmark = pytest.mark.pulse


def play(env: dict, tmp_path, device: str, loop: np.ndarray, seconds: float):
    wav = tmp_path / "loop.wav"
    soundfile.write(wav, loop, RATE, subtype="FLOAT")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"output:\n  backend: alsa\n  device: {device}\nplayback:\n  volume: 100\n")
    return subprocess.run(
        [sys.executable, "-m", "infiniloopd", "play", str(wav), "--config", str(cfg),
         "--duration", str(seconds)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_file_plugin_receives_the_exact_looped_samples(alsa_env, tmp_path):
    loop = noise_loop(0.2, seed=11)
    result = play(alsa_env.env, tmp_path, alsa_env.file_pcm, loop, 1.5)
    assert result.returncode == 0, result.stderr
    assert "alsa: device testfile" in result.stderr
    data = alsa_env.read_file_pcm()
    # The file plugin does not pace; the output paces itself, so about 1.5 s (+ fade) arrive.
    assert 1.2 * RATE < data.shape[0] < 4 * RATE
    ideal = np.rint(loop * 32767) / 32767
    end = data.shape[0] - RATE // 2 - RATE // 10  # before the 0.5 s fade-out
    repeats = assert_tiles(data, ideal, first_sound(data) + RATE // 20, 4, end, tolerance=1e-6)
    assert repeats >= 4


def test_pulse_plugin_plays_into_the_server(alsa_env, pulse_server, tmp_path):
    loop = noise_loop(0.25, seed=12)
    rec = pulse_server.start_recording()
    result = play(alsa_env.env, tmp_path, alsa_env.pulse_pcm, loop, 1.5)
    data = rec.stop()
    assert result.returncode == 0, result.stderr
    end = np.flatnonzero(np.abs(data[:, 0]) > 1e-3)[-1] - RATE // 2
    assert_tiles(data, loop, first_sound(data) + RATE // 20, 3, int(end), tolerance=1e-4)


def test_missing_device_is_one_clear_line(alsa_env, tmp_path):
    result = play(alsa_env.env, tmp_path, "no_such_pcm", noise_loop(0.1), 1.0)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        "infiniloopd: alsa: no such PCM device 'no_such_pcm' (list them with: aplay -L)"
    )


UNDERRUN_SCRIPT = """
import sys, time
import numpy as np
from infiniloopd.outputs.alsa import AlsaOutput
out = AlsaOutput(sys.argv[1], latency_ms=100)
out.open(48000, 2)
tone = (0.3 * np.sin(2 * np.pi * 500 * np.arange(960) / 48000)).astype(np.float32)
block = np.stack([tone, tone], axis=1)
for burst in range(2):
    for _ in range(15):
        out.write(block)
    time.sleep(0.8)  # starve the device: an underrun
out.close()
print("xruns", out.xruns)
"""


def test_underrun_is_survived(alsa_env, pulse_server):
    rec = pulse_server.start_recording()
    result = subprocess.run(
        [sys.executable, "-c", UNDERRUN_SCRIPT, alsa_env.pulse_pcm],
        env=alsa_env.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    data = rec.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("xruns ")
    loud = np.abs(data[:, 0]) > 0.01
    # Two bursts of 0.3 s separated by the stall: both arrived.
    edges = np.flatnonzero(np.diff(loud.astype(np.int8)) == 1)
    assert loud.sum() > 0.5 * RATE
    assert any(e > edges[0] + 0.7 * RATE for e in edges), "the second burst never played"
