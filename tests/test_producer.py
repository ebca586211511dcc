"""Producer policy with a fast, controllable generator and the real loop engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.analysis import analyse_clip
from infiniloopd.config import parse_config
from infiniloopd.generators import GeneratorError
from infiniloopd.library import Library
from infiniloopd.producer import Producer
from infiniloopd.worker import AnalysisFailed
from tests.fake_musicgpt import music

CLIP = music("producer test", 8, np.random.default_rng(3))


class FastGen:
    """A generator that writes a real musical clip at once, or fails, or waits on a gate."""

    name = "fast"
    model = "m1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail: str | None = None
        self.gate: asyncio.Event | None = None
        self.running = 0
        self.max_running = 0
        self.cancelled = 0
        self.delay = 0.0

    async def generate(self, prompt, seconds, out, progress, *, seed):
        self.calls.append((prompt, seed))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            progress(0.5)
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail:
                raise GeneratorError(self.fail)
            sf.write(str(out), CLIP, 32000, subtype="FLOAT")
            progress(1.0)
            return out
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


class InlineAnalyzer:
    """The AnalyzerWorker's interface, running the real loop engine in a thread."""

    rate = 32000
    channels = 1

    async def analyse(self, clip: Path):
        y, sr = sf.read(str(clip), dtype="float32")

        def run():
            loop, points, info = analyse_clip(
                y, sr, out_rate=self.rate, out_channels=1, target_lufs=-18.0,
                peak_ceiling_db=-1.0, min_seconds=2.0, max_seconds=None,
            )  # fmt: skip
            return loop, {**info, "start": points.start, "end": points.end}

        try:
            return await asyncio.to_thread(run)
        except ValueError as exc:
            raise AnalysisFailed(str(exc)) from None


class Rig:
    def __init__(self, tmp_path: Path, **gen_cfg) -> None:
        gen_cfg.setdefault("seconds", 8)
        self.cfg = parse_config({"generator": gen_cfg})
        self.library = Library(tmp_path / "lib", 100)
        self.library.scan()
        self.gen = FastGen()
        self.events: list[tuple[str, dict]] = []
        self.spool = tmp_path / "spool"
        self.made = 0

        def factory(cfg):
            self.made += 1
            return self.gen

        self.factory = factory

    def producer(self, prompt: str = "rainy lofi", **kw) -> Producer:
        return Producer(
            self.cfg,
            self.library,
            InlineAnalyzer(),
            lambda name, data: self.events.append((name, data)),
            prompt=prompt,
            spool=self.spool,
            generator_factory=self.factory,
            **kw,
        )

    def names(self, event: str) -> list[dict]:
        return [d for n, d in self.events if n == event]


async def until(cond, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_prefetch_fills_the_queue_and_refills_after_take(tmp_path):
    rig = Rig(tmp_path, prefetch=2)

    async def scenario():
        p = rig.producer()
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: len(p.ready()) == 2)
            await asyncio.sleep(0.3)
            assert len(rig.gen.calls) == 2  # no more than prefetch
            assert p.status()["generating"] is False
            entry, audio = p.take_ready()
            assert audio.shape == (entry.end - entry.start, 1)
            await until(lambda: len(p.ready()) == 2)
            return p, entry
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    p, taken = asyncio.run(scenario())
    assert len(rig.gen.calls) == 3
    assert len({seed for _, seed in rig.gen.calls}) == 3  # every clip its own seed
    ready = rig.names("loop_ready")
    assert [d["id"] for d in ready][:1] == [taken.id]
    assert all(d["prompt"] == "rainy lofi" and d["seconds"] > 2 for d in ready)
    assert {e.id for e in rig.library.entries()} == {d["id"] for d in ready}
    assert rig.library.get(taken.id).last_played is not None
    assert len(rig.names("generation_started")) == 3
    assert rig.names("generation_progress")[0]["fraction"] == 0.5
    assert list(rig.spool.iterdir()) == []  # raw clips are removed once analysed


def test_prompt_change_cancels_and_drops_old_loops(tmp_path):
    rig = Rig(tmp_path, prefetch=2)

    async def scenario():
        p = rig.producer("rainy lofi")
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: len(p.ready()) == 2)
            rig.gen.gate = asyncio.Event()
            p.take_ready()
            await until(lambda: rig.gen.running == 1)  # blocked on the gate
            p.set_prompt("dark techno")
            assert p.ready() == []
            await until(lambda: rig.gen.cancelled == 1)
            rig.gen.gate.set()
            await until(lambda: len(p.ready()) == 2)
            return [e.prompt for e in p.ready()], p.status()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    prompts, status = asyncio.run(scenario())
    assert prompts == ["dark techno", "dark techno"]
    assert status["prompt"] == "dark techno" and status["failures"] == 0
    assert [c[0] for c in rig.gen.calls][-2:] == ["dark techno", "dark techno"]


def test_keep_retains_old_loops_but_plays_the_new_prompt_first(tmp_path):
    rig = Rig(tmp_path, prefetch=1)

    async def scenario():
        p = rig.producer("rainy lofi")
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: len(p.ready()) == 1)
            p.set_prompt("jazz trio", keep=True)
            assert [e.prompt for e in p.ready()] == ["rainy lofi"]
            await until(lambda: len(p.ready()) == 2)
            first = p.take_ready()[0].prompt
            second = p.take_ready()[0].prompt
            return first, second
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(scenario()) == ("jazz trio", "rainy lofi")


def test_switching_policy(tmp_path):
    rig = Rig(tmp_path, prefetch=1)

    async def scenario():
        p = rig.producer()
        assert not p.should_switch(played=100, min_play=60)  # nothing ready: keep looping
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: len(p.ready()) == 1)
            return p.should_switch(10, 60), p.should_switch(60, 60), p.should_switch(61, 0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(scenario()) == (False, True, True)


def test_failures_back_off_then_fall_back_to_the_library(tmp_path):
    rig = Rig(tmp_path, prefetch=1)
    old = rig.library.add(np.full((32000 * 3, 1), 0.1, np.float32), 32000, {"prompt": "old"})
    rig.gen.fail = "fast (m1) failed (exit 1): out of memory"

    async def scenario():
        p = rig.producer(backoff_base=0.1, backoff_max=0.4, fallback_after=3)
        assert p.take_ready() is None
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: p.status()["failures"] >= 5)
            status = p.status()
            # The fallback loop is loaded ahead, off the event loop.
            await until(lambda: p.should_switch(100, 60))
            fallback_take = p.take_ready()
            switch = p.should_switch(100, 60)
            rig.gen.fail = None
            await until(lambda: len(p.ready()) == 1, timeout=5)
            return status, fallback_take, switch, p.status()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    status, fallback_take, switch, after = asyncio.run(scenario())
    assert status["fallback"] is True
    assert status["consecutive_failures"] >= 5
    assert status["last_error"] == "fast (m1) failed (exit 1): out of memory"
    delays = [d["retry_in"] for d in rig.names("generation_failed")]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4]  # doubling, capped
    assert fallback_take is not None and fallback_take[0].id == old.id
    assert fallback_take[1].shape == (32000 * 3, 1)
    assert switch is False  # the only library loop was just played
    assert after["fallback"] is False and after["consecutive_failures"] == 0


def test_generator_that_cannot_be_made_is_a_counted_failure(tmp_path):
    rig = Rig(tmp_path, prefetch=1)

    def broken(cfg):
        raise GeneratorError("musicgpt: neither 'musicgpt' nor ... found on PATH")

    async def scenario():
        p = rig.producer(backoff_base=0.05)
        p._factory = broken  # the same path a bad generator config takes
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: p.status()["failures"] >= 2)
            return p.status()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    status = asyncio.run(scenario())
    assert "found on PATH" in status["last_error"]
    assert status["generating"] is False


def test_concurrency_runs_generations_side_by_side(tmp_path):
    rig = Rig(tmp_path, prefetch=3, concurrency=2)
    rig.gen.delay = 0.3

    async def scenario():
        p = rig.producer()
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: len(p.ready()) == 3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert rig.gen.max_running == 2
    assert len(rig.gen.calls) == 3


def test_stats_per_model_and_restore(tmp_path):
    rig = Rig(tmp_path, prefetch=2)
    rig.gen.delay = 0.2

    async def scenario():
        p = rig.producer()
        p.stats = {"fast/m1": {"clips": 2, "mean_seconds": 1.2, "realtime_factor": 0.15}, "x": 3}
        task = asyncio.create_task(p.run())
        try:
            await until(lambda: len(p.ready()) == 2)
            return p.status()["stats"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    stats = asyncio.run(scenario())
    assert set(stats) == {"fast/m1"}
    st = stats["fast/m1"]
    assert st["clips"] == 4
    # Two restored clips at 1.2 s plus two measured at about 0.2 s.
    assert st["mean_seconds"] == pytest.approx((2 * 1.2 + 2 * 0.2) / 4, abs=0.05)
    assert st["realtime_factor"] == pytest.approx((2 * 0.15 + 2 * 0.2 / 8) / 4, abs=0.01)


def test_first_loop_prefers_the_current_prompt(tmp_path):
    rig = Rig(tmp_path)
    tone = np.full((32000 * 3, 1), 0.1, np.float32)
    rig.library.add(tone, 32000, {"prompt": "techno"})
    mine = rig.library.add(tone, 32000, {"prompt": "Rainy Lofi"})
    p = rig.producer("rainy lofi")
    entry, audio = p.first_loop()
    assert entry.id == mine.id and audio.shape == tone.shape
    assert rig.library.get(mine.id).last_played is not None
    empty = Rig(tmp_path / "empty").producer()
    assert empty.first_loop() is None
