"""The file output: exact WAV contents, a valid header after SIGKILL, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from infiniloopd.outputs.file import FileOutput
from infiniloopd.outputs.null import NullOutput
from infiniloopd.player import Player
from tests.audio_checks import assert_tiles, first_sound, noise_loop
from tests.audio_servers import RATE


@pytest.mark.parametrize(("fmt", "subtype"), [("float32", "FLOAT"), ("pcm16", "PCM_16")])
def test_blocks_are_written_exactly(tmp_path, fmt, subtype):
    path = tmp_path / "out.wav"
    out = FileOutput(path, fmt=fmt, realtime=False)
    out.open(RATE, 2)
    blocks = [noise_loop(0.02, seed=i) for i in range(10)]
    for block in blocks:
        out.write(block)
    out.close()
    info = soundfile.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (RATE, 2, subtype, 9600)
    expected = np.concatenate(blocks)
    if fmt == "pcm16":
        data, _ = soundfile.read(path, dtype="int16", always_2d=True)
        np.testing.assert_array_equal(data, np.rint(expected * 32767).astype(np.int16))
    else:
        data, _ = soundfile.read(path, dtype="float32", always_2d=True)
        np.testing.assert_array_equal(data, expected)


def test_player_renders_a_loop_faster_than_real_time(tmp_path):
    path = tmp_path / "render.wav"
    loop = noise_loop(0.3, seed=5)
    player = Player(FileOutput(path, fmt="float32", realtime=False), rate=RATE, channels=2,
                    volume=1.0)  # fmt: skip
    player.start()
    started = time.monotonic()
    try:
        player.play_loop("n", loop, 0.0)
        while player.status().played < 3.0:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
    finally:
        player.close()
    data, _ = soundfile.read(path, dtype="float32", always_2d=True)
    assert data.shape[0] >= 3 * RATE
    assert elapsed < 3.0  # not paced: a 3 s render must not take 3 s of wall time
    assert_tiles(data, loop, first_sound(data) + RATE // 20, 8, tolerance=1e-7)


def _start_play(tmp_path, fmt: str):
    wav = tmp_path / "loop.wav"
    loop = noise_loop(0.25, seed=9)
    soundfile.write(wav, loop, RATE, subtype="FLOAT")
    out = tmp_path / "live.wav"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"output:\n  backend: file\n  path: {out}\n  format: {fmt}\nplayback:\n  volume: 100\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "infiniloopd", "play", str(wav), "--config", str(cfg)],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    return proc, out, loop


def _wait_audio(path, seconds: float, proc) -> float:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if path.exists() and path.stat().st_size > seconds * RATE * 8:
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError("no audio written")


def test_header_is_valid_after_sigkill_and_output_is_paced(tmp_path):
    proc, out, loop = _start_play(tmp_path, "float32")
    try:
        first = _wait_audio(out, 0.1, proc)
        time.sleep(1.5)
        killed = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    size = out.stat().st_size
    info = soundfile.info(out)
    header = 58  # RIFF + fmt (18) + fact + data headers for float32
    assert info.frames == (size - header) // 8  # header agrees with the data on disk
    # Paced in real time: about 1.6 s of audio, never a burst far ahead of the clock.
    assert 1.2 * RATE < info.frames < (killed - first + 0.6) * RATE
    data, _ = soundfile.read(out, dtype="float32", always_2d=True)
    assert_tiles(data, loop, first_sound(data) + RATE // 20, 4, tolerance=1e-7)


def test_sigterm_fades_out_and_exits_zero(tmp_path):
    proc, out, loop = _start_play(tmp_path, "pcm16")
    try:
        _wait_audio(out, 0.5, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    data, _ = soundfile.read(out, dtype="float32", always_2d=True)
    tail = np.abs(data[-RATE // 100 :, 0]).max()
    assert tail < 0.01  # faded to silence, not cut
    level = np.abs(data[first_sound(data) + RATE // 10 :, 0])
    # The fade-out is gradual: the last 0.5 s falls from full level to silence.
    last = level[-RATE // 2 :]
    assert last[: RATE // 20].max() > 0.2 and last[-RATE // 20 :].max() < 0.1


def test_null_output_is_paced(tmp_path):
    out = NullOutput()
    out.open(RATE, 2)
    block = np.zeros((960, 2), np.float32)
    started = time.monotonic()
    for _ in range(25):  # 0.5 s
        out.write(block)
    assert time.monotonic() - started > 0.3  # blocks like a sound card (lead is 50 ms)
    out.close()


def test_unwritable_path_is_a_clear_error(tmp_path):
    from infiniloopd.errors import UserError

    out = FileOutput(tmp_path / "missing" / "x.wav")
    with pytest.raises(UserError, match=r"output.path: cannot write .*x.wav: No such file"):
        out.open(RATE, 2)
