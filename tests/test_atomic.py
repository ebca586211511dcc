"""Atomic writes: old or new file, never half of one, and no overwrite unless asked."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.atomic import write_atomic, write_audio_atomic, write_json_atomic


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"v": 1})

    def broken(f):
        f.write(b'{"v": 2')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(target, broken)
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_no_overwrite_refuses_an_existing_file(tmp_path):
    target = tmp_path / "loop.wav"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        write_audio_atomic(
            target,
            np.zeros(10, np.float32),
            8000,
            format="WAV",
            subtype="PCM_16",
            overwrite=False,
        )
    assert target.read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["loop.wav"]


def test_mode_and_content(tmp_path):
    target = tmp_path / "loop.flac"
    audio = (np.sin(np.arange(4800) / 10) * 0.5).astype(np.float32)
    write_audio_atomic(target, audio, 48000, format="FLAC", subtype="PCM_24", mode=0o644)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    back, rate = sf.read(target, dtype="float32")
    assert rate == 48000 and np.max(np.abs(back - audio)) < 1e-5
    write_json_atomic(tmp_path / "p.json", {"a": 1})
    assert stat.S_IMODE(os.stat(tmp_path / "p.json").st_mode) == 0o600
