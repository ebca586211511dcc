"""`infiniloopd loop`, run as a user would: a real subprocess on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.analysis import measure_lufs
from tests.analysis_signals import drum_bar_clip

REPO = Path(__file__).resolve().parents[1]


def run_loop(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infiniloopd", "loop", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    y, _ = drum_bar_clip(seconds=12.0)
    sf.write(d / "mono32k.wav", y, 32000, subtype="PCM_16")
    y2, _ = drum_bar_clip(sr=44100, bpm=90.0, seconds=10.0, channels=2)
    sf.write(d / "stereo44k.wav", y2, 44100, subtype="FLOAT")
    sf.write(d / "silent.wav", np.zeros(32000 * 6, dtype=np.float32), 32000)
    (d / "garbage.wav").write_bytes(b"this is not audio")
    return {p.stem: p for p in d.iterdir()}


def test_single_file_with_json(clips, tmp_path):
    out = tmp_path / "out.wav"
    r = run_loop(clips["mono32k"], out, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.strip())
    assert set(rec) == {"input", "output", "start", "end", "rate", "seconds", "bpm", "score"}
    assert rec["output"] == str(out) and rec["rate"] == 32000
    info = sf.info(out)
    assert info.samplerate == 32000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.frames == rec["end"] - rec["start"]
    assert rec["seconds"] == pytest.approx(info.frames / 32000, abs=1e-5)
    assert rec["bpm"] == pytest.approx(120.0, rel=0.02)
    # level unchanged: past the crossfade the samples are the input's
    y, _ = sf.read(clips["mono32k"], dtype="int16")
    z, _ = sf.read(out, dtype="int16")
    assert np.array_equal(z[2000:], y[rec["start"] + 2000 : rec["end"]])


def test_lengths_and_lufs(clips, tmp_path):
    out = tmp_path / "loud.wav"
    r = run_loop(
        clips["stereo44k"],
        out,
        "--min-length",
        "4",
        "--max-length",
        "6",
        "--lufs",
        "-14",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert 4.0 <= rec["seconds"] <= 6.0
    z, sr = sf.read(out, dtype="float32")
    assert sr == 44100 and z.ndim == 2 and z.shape[1] == 2
    assert measure_lufs(z, sr) == pytest.approx(-14.0, abs=0.5)
    assert np.max(np.abs(z)) <= 10 ** (-1 / 20) + 1e-6


def test_batch_goes_on_past_bad_inputs(clips, tmp_path):
    outdir = tmp_path / "loops"
    r = run_loop(
        "--out-dir",
        outdir,
        clips["mono32k"],
        clips["silent"],
        clips["garbage"],
        tmp_path / "missing.wav",
        clips["stereo44k"],
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 1
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(x["input"]).stem for x in recs] == ["mono32k", "stereo44k"]
    assert sorted(p.name for p in outdir.iterdir()) == ["mono32k-loop.wav", "stereo44k-loop.wav"]
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 3, r.stderr
    assert "silent.wav" in errors[0] and "silent" in errors[0].split("silent.wav", 1)[1]
    assert "garbage.wav" in errors[1] and "cannot read" in errors[1]
    assert "missing.wav" in errors[2]


def test_usage_errors(clips, tmp_path):
    r = run_loop(clips["mono32k"], tmp_path / "a.wav", tmp_path / "b.wav", cwd=tmp_path)
    assert r.returncode != 0 and "expected IN.wav OUT.wav" in r.stderr
    r = run_loop(clips["mono32k"], tmp_path / "a.wav", "--lufs", "loud", cwd=tmp_path)
    assert r.returncode != 0 and "--lufs" in r.stderr
    r = run_loop(
        clips["mono32k"],
        tmp_path / "a.wav",
        "--min-length",
        "6",
        "--max-length",
        "4",
        cwd=tmp_path,
    )
    assert r.returncode != 0 and "--max-length" in r.stderr
    assert not (tmp_path / "a.wav").exists()
