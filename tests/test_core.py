"""The core Session against a fake generator, the real player on the null output, the
real producer and library: no subprocess, no socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from infiniloopd.config import parse_config
from infiniloopd.core.errors import CoreError, InvalidValue, NotFound, NotReady
from infiniloopd.core.listener import CoreListener
from infiniloopd.core.prompt import Prompt, prompt_key
from infiniloopd.core.session import Session
from infiniloopd.core.sleep import fade_gain, fade_length, parse_duration
from infiniloopd.library import Library
from infiniloopd.outputs.null import NullOutput
from infiniloopd.player.engine import Player
from infiniloopd.producer import Producer
from infiniloopd.state import State
from tests.test_producer import FastGen, InlineAnalyzer, until


class Analyzer(InlineAnalyzer):
    """The worker's whole interface: the real analysis, in a thread of this process."""

    pid = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Recorder(CoreListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.states: list[str] = []

    def on_event(self, name, data):
        self.events.append((name, dict(data)))
        super().on_event(name, data)

    def on_state(self, state):
        self.states.append(state)

    def named(self, name: str) -> list[dict]:
        return [d for n, d in self.events if n == name]


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    for var, sub in (
        ("XDG_STATE_HOME", "state"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_MUSIC_DIR", "music"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


async def open_session(
    tmp_path: Path, *, paused: bool = False, gate: asyncio.Event | None = None, **gen
) -> tuple[Session, Recorder]:
    gen.setdefault("seconds", 8)
    gen.setdefault("prefetch", 1)
    cfg = parse_config(
        {
            "prompt": "rainy lofi",
            "generator": gen,
            "playback": {"crossfade": 0.5, "min_play": 3600, "volume": 50},
            "library": {"dir": str(tmp_path / "lib"), "music_dir": str(tmp_path / "music")},
        }
    )
    session = Session(cfg, state=State(paused=paused))
    rec = Recorder()
    session.add_listener(rec)
    output = NullOutput()
    player = Player(output, rate=32000, channels=1, volume=0.5, on_event=session.player_event)
    player.start()
    library = Library(tmp_path / "lib", 100, rate=32000, channels=1)
    library.scan()
    gen_obj = FastGen()
    gen_obj.gate = gate
    producer = Producer(
        session.effective_config(),
        library,
        Analyzer(),
        session.emit,
        prompt=session.prompt,
        spool=tmp_path / "spool",
        generator_factory=lambda _cfg: gen_obj,
    )
    session.attach(
        output=output, player=player, library=library, worker=Analyzer(), producer=producer
    )
    await session.start()
    return session, rec


def run(scenario):
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_plays_the_first_generated_loop_and_pauses_and_resumes(xdg):
    async def scenario():
        s, rec = await open_session(xdg)
        try:
            await until(lambda: s.status()["loop"] is not None and rec.named("loop_started"))
            st = s.status()
            assert st["state"] == "playing" and st["prompt"] == "rainy lofi"
            assert st["volume"] == 50 and st["sleep"] is None
            assert st["loop"]["id"] == rec.named("loop_started")[0]["id"]
            s.pause()
            assert s.status()["state"] == "paused"
            s.toggle()
            assert s.status()["state"] == "playing"
            s.stop()
            s.play()
            assert rec.states == ["paused", "playing", "stopped", "playing"]
        finally:
            await s.close()

    run(scenario)


def test_settings_are_validated_once_and_announced(xdg):
    async def scenario():
        s, rec = await open_session(xdg)
        try:
            assert s.set_volume(120) == 100 and s.set_volume(-3) == 0
            assert s.set_volume(33.4) == 33
            assert [d["volume"] for d in rec.named("volume")] == [100, 0, 33]
            with pytest.raises(InvalidValue, match="volume"):
                s.set_volume("loud")  # type: ignore[arg-type]
            assert s.set_crossfade(2) == 2.0
            assert rec.named("option") == [{"name": "crossfade", "value": 2.0}]
            with pytest.raises(InvalidValue, match="crossfade: expected seconds between 0 and 60"):
                s.set_crossfade(61)
            with pytest.raises(InvalidValue, match="min-play"):
                s.set_min_play(-1)
            assert s.status()["crossfade"] == 2.0
        finally:
            await s.close()

    run(scenario)


def test_prompt_is_normalised_once_and_presets_apply_it(xdg):
    async def scenario():
        s, rec = await open_session(xdg)
        try:
            s.set_prompt("  warm   Pads  at night ")
            assert s.prompt == "warm Pads at night"
            assert rec.named("prompt")[-1]["prompt"] == "warm Pads at night"
            with pytest.raises(InvalidValue, match="non-empty prompt"):
                s.set_prompt("   ")
            assert s.prompt == "warm Pads at night"
            preset = s.apply_preset("rain")
            assert s.preset == "rain" and s.prompt == preset.prompt
            assert rec.named("prompt")[-1]["preset"] == "rain"
            with pytest.raises(NotFound, match="no preset 'nope'"):
                s.apply_preset("nope")
        finally:
            await s.close()

    run(scenario)


def test_next_switches_to_a_ready_loop(xdg):
    async def scenario():
        s, rec = await open_session(xdg)
        try:
            await until(lambda: s.status()["loop"] is not None)
            first = s.status()["loop"]["id"]
            await until(lambda: len(s.ready_loops()) == 1)
            ready = s.ready_loops()[0]
            assert set(ready) == {"id", "prompt", "bpm", "seconds"}
            result = await s.next()
            assert not result.pending
            assert s.status()["loop"]["id"] == ready["id"] != first
            await until(lambda: any(d["id"] == ready["id"] for d in rec.named("loop_started")))
        finally:
            await s.close()

    run(scenario)


def test_next_with_nothing_ready_waits_for_the_next_loop(xdg):
    async def scenario():
        gate = asyncio.Event()
        s, rec = await open_session(xdg, gate=gate)
        try:
            result = await s.next()
            assert result.pending and result.message.startswith("next: as soon as")
            assert rec.named("skip_pending") == [{}] and s.status()["skip_pending"]
            gate.set()
            await until(lambda: s.status()["loop"] is not None)
            assert not s.status()["skip_pending"]
        finally:
            await s.close()

    run(scenario)


def test_errors_are_core_errors_without_wire_codes(xdg):
    async def scenario():
        s, _rec = await open_session(xdg, paused=True)
        try:
            s.current = None
            with pytest.raises(NotReady, match="save: nothing is playing yet"):
                await s.save()
            with pytest.raises(InvalidValue, match="generator.model"):
                s.set_model("no-such-model")
            for exc in (InvalidValue, NotReady, NotFound):
                assert issubclass(exc, CoreError) and not hasattr(exc("x"), "code")
        finally:
            await s.close()

    run(scenario)


def test_a_failing_listener_does_not_reach_the_session(xdg):
    class Broken:
        def on_event(self, name, data):
            raise RuntimeError("listener bug")

    async def scenario():
        s, rec = await open_session(xdg)
        try:
            s.add_listener(Broken())
            s.set_volume(70)
            assert s.volume == 70 and rec.named("volume")[-1] == {"volume": 70}
        finally:
            await s.close()

    run(scenario)


def test_sleep_timer_fades_out_and_pauses(xdg):
    async def scenario():
        s, rec = await open_session(xdg)
        try:
            await until(lambda: s.status()["loop"] is not None)
            s.sleep(1.5)
            left = s.status()["sleep"]["remaining"]
            assert 0 < left <= 1.5
            assert rec.named("sleep")[0] == {"remaining": 1.5}
            assert "sleep in" in s.status_text()
            await until(lambda: s.status()["state"] == "paused", timeout=10)
            assert rec.named("sleep")[-1] == {"remaining": None, "expired": True}
            assert rec.states[-1] == "paused"
            assert s.status()["sleep"] is None
            assert s.volume == 50  # the setting is kept for the next play
            # Cancelled: nothing happens.
            s.play()
            s.sleep(0.5)
            s.sleep(None)
            assert s.status()["sleep"] is None
            await asyncio.sleep(0.8)
            assert s.status()["state"] == "playing"
            with pytest.raises(InvalidValue, match="sleep"):
                s.sleep(0)
        finally:
            await s.close()

    run(scenario)


def test_prompt_value():
    p = Prompt.parse("  Ocean    waves ")
    assert p.text == "Ocean waves" and p.key == "ocean waves" == prompt_key("OCEAN  waves")
    assert p.same_as("ocean WAVES")
    for bad in ("", "  ", "a\x07b", 5, "x" * 1001):
        with pytest.raises(InvalidValue, match="prompt: expected a non-empty prompt"):
            Prompt.parse(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("90", 90), ("OFF", None)],
)
def test_sleep_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30x", "m30", "0", "25h", "1h 30m", "-5m"])
def test_bad_sleep_durations(text):
    with pytest.raises(InvalidValue, match="sleep: expected a duration"):
        parse_duration(text)


def test_sleep_fade_curve():
    assert fade_length(1800) == 60 and fade_length(20) == 20
    assert fade_gain(61, 60) == 1.0 and fade_gain(30, 60) == 0.5 and fade_gain(0, 60) == 0.0
