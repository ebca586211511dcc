"""The loop library on a real directory: atomic writes, eviction, corrupt sidecars."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.library import Library, LoopEntry

RATE = 48000


def noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    # Noise does not compress: file sizes are predictable (about 280 KB per stereo second).
    rng = np.random.default_rng(seed)
    return np.clip(0.3 * rng.standard_normal((int(seconds * RATE), 2)), -0.99, 0.99).astype(
        np.float32
    )


def meta(prompt: str = "rainy lofi", **kw) -> dict:
    base = {
        "prompt": prompt,
        "generator": "synth",
        "model": "FluidR3_GM",
        "bpm": 84.0,
        "start": 1000,
        "end": 1000 + RATE,
        "loudness_lufs": -18.0,
        "score": 0.8,
        "source_seconds": 20.0,
    }
    base.update(kw)
    return base


def test_add_writes_flac_and_sidecar_and_nothing_else(tmp_path):
    lib = Library(tmp_path, 100)
    lib.scan()
    audio = noise()
    entry = lib.add(audio, RATE, meta())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{entry.id}.flac", f"{entry.id}.json"]
    info = sf.info(str(entry.path))
    assert (info.format, info.samplerate, info.channels, info.frames) == ("FLAC", RATE, 2, RATE)
    side = json.loads(entry.path.with_suffix(".json").read_text())
    assert side["prompt"] == "rainy lofi" and side["bpm"] == 84.0 and side["start"] == 1000
    assert side["seconds"] == pytest.approx(1.0) and side["last_played"] is None
    back = lib.load(entry)
    assert back.shape == audio.shape
    assert np.max(np.abs(back - audio)) < 1e-5  # 24-bit
    assert (
        lib.size_bytes()
        == entry.path.stat().st_size + entry.path.with_suffix(".json").stat().st_size
    )


def test_scan_reloads_entries_and_touch_persists(tmp_path):
    lib = Library(tmp_path, 100)
    lib.scan()
    a = lib.add(noise(0.5), RATE, meta())
    b = lib.add(noise(0.5, 1), RATE, meta("techno"))
    lib.touch(b)
    again = Library(tmp_path, 100)
    again.scan()
    got = {e.id: e for e in again.entries()}
    assert set(got) == {a.id, b.id}
    assert got[a.id].last_played is None
    assert got[b.id].last_played == pytest.approx(time.time(), abs=5)
    assert got[b.id].to_json() == {**b.to_json(), "last_played": got[b.id].last_played}


def test_scan_removes_interrupted_writes(tmp_path, caplog):
    lib = Library(tmp_path, 100)
    lib.scan()
    good = lib.add(noise(0.5), RATE, meta())
    (tmp_path / ".20260101-000000-aaaaaa.flac.tmp").write_bytes(b"half a flac")
    (tmp_path / ".20260101-000000-bbbbbb.json.tmp").write_text("{")
    sf.write(str(tmp_path / "20260101-000000-cccccc.flac"), noise(0.2), RATE, format="FLAC")
    caplog.set_level(logging.INFO, "infiniloopd.library")
    lib = Library(tmp_path, 100)
    lib.scan()
    assert [e.id for e in lib.entries()] == [good.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{good.id}.flac", f"{good.id}.json"]
    assert "no sidecar" in caplog.text


def test_corrupt_sidecars_are_skipped_with_a_warning(tmp_path, caplog):
    lib = Library(tmp_path, 100)
    lib.scan()
    good = lib.add(noise(0.5), RATE, meta())
    bad_json = lib.add(noise(0.5, 1), RATE, meta())
    bad_json.path.with_suffix(".json").write_text('{"id": "x", ')
    bad_type = lib.add(noise(0.5, 2), RATE, meta())
    side = json.loads(bad_type.path.with_suffix(".json").read_text())
    side["rate"] = "fast"
    bad_type.path.with_suffix(".json").write_text(json.dumps(side))
    no_audio = lib.add(noise(0.5, 3), RATE, meta())
    no_audio.path.unlink()
    caplog.set_level(logging.WARNING, "infiniloopd.library")
    again = Library(tmp_path, 100)
    again.scan()
    assert [e.id for e in again.entries()] == [good.id]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert any(bad_json.id in w for w in warnings)
    assert any("rate: expected an integer, got 'fast'" in w for w in warnings)
    assert any("audio" in w and "missing" in w for w in warnings)
    assert all("\n" not in w for w in warnings)


def test_eviction_removes_least_recently_played_first(tmp_path):
    lib = Library(tmp_path, 1.0)  # 1 MiB: room for three one-second noise loops
    lib.scan()
    first = lib.add(noise(1, 0), RATE, meta())
    second = lib.add(noise(1, 1), RATE, meta())
    third = lib.add(noise(1, 2), RATE, meta())
    lib.touch(first)  # played now: the oldest by creation but the most recently heard
    fourth = lib.add(noise(1, 3), RATE, meta())
    ids = {e.id for e in lib.entries()}
    assert second.id not in ids
    assert {first.id, third.id, fourth.id} <= ids
    assert not second.path.exists() and not second.path.with_suffix(".json").exists()
    assert lib.size_bytes() <= 1024 * 1024
    # The newest loop is never evicted, even when it alone is over the cap.
    tiny = Library(tmp_path / "tiny", 0.1)
    tiny.scan()
    big = tiny.add(noise(1, 4), RATE, meta())
    assert [e.id for e in tiny.entries()] == [big.id]


def test_touch_after_eviction_does_not_resurrect_a_sidecar(tmp_path):
    lib = Library(tmp_path, 100)
    lib.scan()
    entry = lib.add(noise(0.3), RATE, meta())
    lib.remove(entry)
    lib.touch(entry)
    assert list(tmp_path.iterdir()) == []


def test_pick_prefers_the_prompt_and_the_least_recently_played(tmp_path):
    lib = Library(tmp_path, 100)
    lib.scan()
    assert lib.pick("anything", set()) is None
    a = lib.add(noise(0.3, 0), RATE, meta("Rainy  Lofi"))
    b = lib.add(noise(0.3, 1), RATE, meta("rainy lofi"))
    c = lib.add(noise(0.3, 2), RATE, meta("techno"))
    lib.touch(a)
    assert lib.pick("rainy lofi", set()).id == b.id  # never played beats played
    assert lib.pick("rainy lofi", {b.id}).id == a.id
    assert lib.pick("rainy lofi", {a.id, b.id}).id == c.id  # other prompts as a last resort
    assert lib.pick("jazz", {a.id, b.id, c.id}) is None
    assert isinstance(lib.pick("techno", set()), LoopEntry)
