"""The analyzer worker: a real separate process running the loop engine."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.worker import AnalysisFailed, AnalyzerWorker
from tests.fake_musicgpt import music


def make_worker() -> AnalyzerWorker:
    return AnalyzerWorker(
        rate=48000, channels=2, target_lufs=-18.0, peak_ceiling_db=-1.0, min_loop=3.0, max_loop=None
    )


def clip(tmp_path: Path, prompt: str, seconds: int = 10) -> tuple[Path, float]:
    """A musical 32 kHz clip (the MusicGPT stand-in's music) and its tempo."""
    path = tmp_path / f"{prompt.replace(' ', '_')}.wav"
    sf.write(str(path), music(prompt, seconds, np.random.default_rng(1)), 32000, subtype="FLOAT")
    bpm = 84 + int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 40
    return path, float(bpm)


def test_analysis_runs_in_a_separate_process(tmp_path):
    path, bpm = clip(tmp_path, "warm rhodes")

    async def scenario():
        w = make_worker()
        await w.start()
        try:
            assert w.pid is not None and w.pid != os.getpid()
            assert w.warm_seconds is not None
            return await w.analyse(path), w.pid
        finally:
            await w.close()

    (loop, info), pid = asyncio.run(scenario())
    assert loop.dtype == np.float32 and loop.ndim == 2 and loop.shape[1] == 2
    assert loop.shape[0] == info["end"] - info["start"]
    assert 3.0 <= loop.shape[0] / 48000 <= 10.0
    tempo = info["bpm"]
    assert min(abs(tempo - bpm), abs(tempo - 2 * bpm), abs(tempo - bpm / 2)) < 3, (tempo, bpm)
    assert info["loudness_lufs"] == pytest.approx(-18.0, abs=1.0)
    assert info["source_seconds"] == pytest.approx(10.0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bad_clips_fail_cleanly_and_the_worker_survives(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really")
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(32000 * 8, np.float32), 32000)
    good, _ = clip(tmp_path, "techno")

    async def scenario():
        w = make_worker()
        await w.start()
        pid = w.pid
        try:
            with pytest.raises(AnalysisFailed, match="garbage.wav: cannot read"):
                await w.analyse(garbage)
            with pytest.raises(AnalysisFailed, match="silent.wav"):
                await w.analyse(silent)
            loop, _ = await w.analyse(good)
            return pid, w.pid, w.restarts, loop
        finally:
            await w.close()

    before, after, restarts, loop = asyncio.run(scenario())
    assert before == after and restarts == 0
    assert loop.shape[0] > 48000 * 3


def test_a_killed_worker_is_restarted(tmp_path):
    path, _ = clip(tmp_path, "dub reggae")

    async def scenario():
        w = make_worker()
        await w.start()
        try:
            first = w.pid
            os.kill(first, signal.SIGKILL)
            # Dead while idle: the daemon replaces it on its own, before any request.
            for _ in range(600):  # up to 30 s on a loaded machine
                await asyncio.sleep(0.05)
                if w.pid not in (None, first):
                    break
            second = w.pid
            assert second not in (None, first)
            loop, _ = await w.analyse(path)
            assert w.pid == second
            # Killed in the middle of an analysis: that clip fails, the next one works.
            task = asyncio.create_task(w.analyse(path))
            await asyncio.sleep(0.05)
            os.kill(second, signal.SIGKILL)
            with pytest.raises(AnalysisFailed, match="worker lost while analysing"):
                await task
            again, _ = await w.analyse(path)
            return first, second, w.pid, w.restarts, loop, again
        finally:
            await w.close()

    first, second, third, restarts, loop, again = asyncio.run(scenario())
    assert len({first, second, third}) == 3
    assert restarts == 2
    assert loop.shape == again.shape


def test_a_cancelled_request_does_not_leak_into_the_next(tmp_path):
    long_clip, _ = clip(tmp_path, "ambient drone", seconds=20)
    short_clip, _ = clip(tmp_path, "chiptune", seconds=8)

    async def scenario():
        w = make_worker()
        await w.start()
        try:
            _, short_info = await w.analyse(short_clip)
            task = asyncio.create_task(w.analyse(long_clip))
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            _, info = await w.analyse(short_clip)
            return short_info, info
        finally:
            await w.close()

    expected, got = asyncio.run(scenario())
    assert got["source_seconds"] == pytest.approx(8.0)
    assert (got["start"], got["end"]) == (expected["start"], expected["end"])
