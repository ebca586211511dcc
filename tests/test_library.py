"""The loop library on a real directory: atomic writes, eviction, corrupt sidecars."""

from __future__ import annotations

import json
import logging
import os
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


def _breakers(side: dict) -> dict:
    """Sidecar contents that must each be skipped (name -> bytes or a maker)."""
    deep = b'{"id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return {
        "deep": deep,
        "not-utf8": json.dumps(side).encode().replace(b"rainy", b"\xff\xfe"),
        "surrogate": json.dumps({**side, "prompt": "calm \ud800"}).encode(),
        "control": json.dumps({**side, "prompt": "calm\x1b[2J"}).encode(),
        "huge-int": json.dumps({**side, "created": 10**400}).encode(),
        "infinite": json.dumps({**side, "seconds": float("inf")}).encode(),
        "huge": b'{"id": "' + b"x" * 5_000_000 + b'"}',
        "no-rate": json.dumps({**side, "rate": 0}).encode(),
        "list": b"[1, 2]",
        "empty": b"",
    }


def test_any_broken_sidecar_is_skipped_with_one_warning(tmp_path, caplog):
    lib = Library(tmp_path, 100)
    lib.scan()
    good = lib.add(noise(0.2), RATE, meta())
    side = json.loads(good.path.with_suffix(".json").read_text())
    cases = _breakers(side)
    for i, (_name, data) in enumerate(cases.items()):
        entry = lib.add(noise(0.2, i + 1), RATE, meta())
        sidecar = entry.path.with_suffix(".json")
        # Keep the id matching the file name, so only the broken part is to blame.
        sidecar.write_bytes(data.replace(good.id.encode(), entry.id.encode()))
    fifo = lib.add(noise(0.2, 99), RATE, meta())
    fifo.path.with_suffix(".json").unlink()
    os.mkfifo(fifo.path.with_suffix(".json"))  # reading it would block the start forever
    (tmp_path / "dir.json").mkdir()
    caplog.set_level(logging.WARNING, "infiniloopd.library")
    again = Library(tmp_path, 100)
    again.scan()
    assert [e.id for e in again.entries()] == [good.id]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(cases) + 2, warnings
    assert all("\n" not in w and len(w) < 400 for w in warnings)
    for w in warnings:
        w.encode("utf-8")  # nothing undecodable reaches the log


def test_loops_of_another_rate_or_channel_count_are_converted(tmp_path):
    t = np.arange(RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 440 whole cycles: a loop
    lib = Library(tmp_path, 100)
    lib.scan()
    mono = lib.add(tone[:, None], RATE, meta())
    at_44k = Library(tmp_path, 100, rate=44100, channels=2)
    at_44k.scan()
    audio = at_44k.load(at_44k.get(mono.id))
    assert audio.shape == (44100, 2)
    # Same pitch (not played fast or slow): the peak of the spectrum stays at 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio[:, 0]))
    assert abs(np.argmax(spectrum) * 44100 / len(audio) - 440) < 2
    # Still seamless: the jump across the wrap is no bigger than between neighbours.
    steps = np.abs(np.diff(audio[:, 0]))
    assert abs(audio[0, 0] - audio[-1, 0]) <= steps.max() * 1.05
    assert np.array_equal(audio[:, 0], audio[:, 1])
    same = Library(tmp_path, 100, rate=RATE, channels=1)
    same.scan()
    assert np.allclose(same.load(same.get(mono.id))[:, 0], tone, atol=1e-5)


def test_a_loop_longer_than_its_sidecar_says_is_refused_before_decoding(tmp_path):
    from infiniloopd.errors import UserError

    lib = Library(tmp_path, 100)
    lib.scan()
    entry = lib.add(noise(3.0), RATE, meta())
    side = entry.path.with_suffix(".json")
    data = json.loads(side.read_text())
    data["seconds"] = 0.5
    side.write_text(json.dumps(data))
    again = Library(tmp_path, 100)
    again.scan()
    with pytest.raises(UserError, match=r"144000 frames at 48000 Hz, expected at most 1.5 s"):
        again.load(again.get(entry.id))


GRID = {
    "bpm": 120.0,
    "beats_per_bar": 4,
    "beats": [0, 24000],
    "downbeats": [0],
    "changes": [24000],
}


def test_grid_and_music_round_trip_through_the_sidecar(tmp_path):
    lib = Library(tmp_path, 100)
    lib.scan()
    music = {"style": "lofi", "key": "A minor", "tempo": 120.0, "instruments": ["piano"]}
    entry = lib.add(noise(), RATE, meta(grid=GRID, music=music))
    side = json.loads(entry.path.with_suffix(".json").read_text())
    assert side["grid"] == GRID and side["music"] == music
    again = Library(tmp_path, 100)
    again.scan()
    got = again.get(entry.id)
    assert got.grid == GRID and got.music == music
    assert again.grid(got) == GRID  # same rate: unchanged


def test_old_sidecars_without_grid_or_music_still_load(tmp_path):
    lib = Library(tmp_path, 100)
    lib.scan()
    entry = lib.add(noise(0.3), RATE, meta())
    sidecar = entry.path.with_suffix(".json")
    side = json.loads(sidecar.read_text())
    del side["grid"], side["music"]
    sidecar.write_text(json.dumps(side))
    again = Library(tmp_path, 100)
    again.scan()
    got = again.get(entry.id)
    assert got is not None and got.grid is None and got.music is None
    assert again.grid(got) is None


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("fast", "grid: expected a JSON object"),
        ({**GRID, "bpm": "fast"}, "grid: bpm: expected a number"),
        ({**GRID, "bpm": -3}, "grid: bpm: expected a tempo"),
        ({**GRID, "beats_per_bar": 0}, "grid: beats_per_bar"),
        ({**GRID, "beats": [0, 48000]}, "grid: beats: positions must lie within"),
        ({**GRID, "beats": [-1, 0]}, "grid: beats: positions must lie within"),
        ({**GRID, "beats": [24000, 0]}, "grid: beats: positions must be strictly ascending"),
        ({**GRID, "changes": [1.5]}, "grid: changes: expected integer sample positions"),
        ({**GRID, "downbeats": [12]}, "grid: downbeats: every downbeat must also be a beat"),
        ({**GRID, "beats": "0 24000"}, "grid: beats: expected a list"),
    ],
    ids=[
        "type",
        "bpm-type",
        "bpm-range",
        "meter",
        "past-end",
        "negative",
        "unsorted",
        "float",
        "downbeat",
        "not-list",
    ],
)
def test_a_bad_grid_skips_the_sidecar_with_one_clear_warning(tmp_path, caplog, grid, message):
    lib = Library(tmp_path, 100)
    lib.scan()
    good = lib.add(noise(), RATE, meta(grid=GRID))
    bad = lib.add(noise(1.0, 1), RATE, meta())
    sidecar = bad.path.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "grid": grid}))
    caplog.set_level(logging.WARNING, "infiniloopd.library")
    again = Library(tmp_path, 100)
    again.scan()
    assert [e.id for e in again.entries()] == [good.id]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and message in warnings[0] and bad.id in warnings[0], warnings
    assert "\n" not in warnings[0]


def test_a_bad_grid_from_the_analyzer_is_dropped_not_the_loop(tmp_path, caplog):
    lib = Library(tmp_path, 100)
    lib.scan()
    caplog.set_level(logging.WARNING, "infiniloopd.library")
    entry = lib.add(noise(0.5), RATE, meta(grid={**GRID, "beats": [0, RATE]}))
    assert entry.grid is None
    assert "dropping the beat grid" in caplog.text
    again = Library(tmp_path, 100)
    again.scan()
    assert again.get(entry.id) is not None


def test_grid_positions_follow_a_rate_conversion(tmp_path):
    lib = Library(tmp_path, 100)
    lib.scan()
    entry = lib.add(noise(), RATE, meta(grid=GRID))
    at_44k = Library(tmp_path, 100, rate=44100)
    at_44k.scan()
    got = at_44k.get(entry.id)
    frames = at_44k.load(got).shape[0]
    grid = at_44k.grid(got)
    assert frames == 44100
    assert grid["beats"] == [0, 22050] and grid["downbeats"] == [0]
    assert grid["changes"] == [22050] and grid["bpm"] == 120.0
    assert got.grid == GRID  # the entry itself keeps its own rate's positions
