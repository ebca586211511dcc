"""`infiniloopd play` file loading: resampling keeps the loop seamless, channels are mapped."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from infiniloopd.cli_play import load_loop, map_channels
from infiniloopd.errors import UserError


def test_resampled_loop_stays_seamless_across_the_wrap(tmp_path):
    # 441 whole cycles in one second at 44.1 kHz: seamless; at 48 kHz it must stay so.
    t = np.arange(44100) / 44100
    path = tmp_path / "sine.wav"
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 441 * t), 44100, subtype="FLOAT")
    loop = load_loop(path, 48000, 2)
    assert loop.shape == (48000, 2) and loop.dtype == np.float32
    tiled = np.tile(loop[:, 0], 3)
    # Fit amplitude and phase (the resampler may shift by a fraction of a sample); what
    # is left must be tiny everywhere, the two wrap points included.
    w = 2 * np.pi * 441 * np.arange(tiled.size) / 48000
    basis = np.stack([np.sin(w), np.cos(w)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, tiled, rcond=None)
    err = np.abs(tiled - basis @ coef)
    assert np.hypot(*coef) == pytest.approx(0.5, abs=1e-3)
    # (a plain one-shot resample leaves ~1e-3 at the seam)
    assert err.max() < 1e-5, f"worst error {err.max():.4f} at {np.argmax(err) % 48000}"
    np.testing.assert_array_equal(loop[:, 0], loop[:, 1])  # mono copied to both channels


def test_channel_mapping():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(map_channels(x, 2), x[:, :2])
    np.testing.assert_allclose(map_channels(x, 1)[:, 0], x.mean(axis=1))
    np.testing.assert_array_equal(map_channels(x[:, :2], 4), x[:, [0, 1, 0, 1]])


def test_bad_files_are_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(UserError, match=r"^.*bad\.wav: cannot read audio: Format not recognised"):
        load_loop(bad, 48000, 2)
    with pytest.raises(UserError, match=r"missing\.wav: no such file$"):
        load_loop(tmp_path / "missing.wav", 48000, 2)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros((0, 2)), 48000)
    with pytest.raises(UserError, match="empty.wav: no audio"):
        load_loop(empty, 48000, 2)


def test_duration_is_seconds_of_audio_with_an_unpaced_file(tmp_path):
    """realtime: false renders as fast as possible; --duration still means audio seconds."""
    import subprocess
    import sys

    rate = 48000
    t = np.arange(rate) / rate
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    soundfile.write(a, 0.3 * np.sin(2 * np.pi * 220 * t), rate)
    soundfile.write(b, 0.3 * np.sin(2 * np.pi * 330 * t), rate)
    out = tmp_path / "out.wav"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output: {{backend: file, path: {out}, realtime: false}}\n")
    argv = [sys.executable, "-m", "infiniloopd", "play", str(a), str(b), "--config", str(cfg)]
    r = subprocess.run(
        [*argv, "--duration", "10", "--each", "4", "--crossfade", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    x, sr = soundfile.read(out)
    assert sr == rate
    assert len(x) == 10 * rate + rate // 2  # 10 s, then the 0.5 s fade-out

    # Each file for 4 s of audio: 220 Hz until 4 s, 330 Hz from 4.5 s (after the fade).
    def pitch(seg):
        spec = np.abs(np.fft.rfft(seg[:, 0]))
        return np.argmax(spec) * rate / len(seg)

    assert pitch(x[rate : 3 * rate]) == pytest.approx(220, abs=2)
    assert pitch(x[5 * rate : 7 * rate]) == pytest.approx(330, abs=2)
    assert pitch(x[int(8.6 * rate) : int(9.9 * rate)]) == pytest.approx(220, abs=2)
    assert np.abs(x[-100:]).max() < 0.01  # faded out
    # Without --duration an unpaced output would never stop: refused in one line.
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "--duration: needed with an output that is not paced" in r.stderr
