"""The schedule: entries, the cron parser, firings across DST and clock changes (an
injected wall clock), and `infiniloopctl schedule` against the real daemon."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from infiniloopd.config import ConfigError, parse_config
from infiniloopd.core.errors import NotFound
from infiniloopd.core.schedule import (
    Scheduler,
    in_force,
    last_firing,
    next_firing,
    parse_cron,
    parse_entry,
    upcoming,
)
from tests.daemon_proc import Daemon, base_config

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def local(ts: float, tz=BERLIN) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%a %Y-%m-%d %H:%M %Z")


# --- entries and the cron parser ----------------------------------------------------------


def test_entries_of_each_form():
    at = parse_entry({"at": "7:30", "preset": "morning"}, 0)
    assert at.when == "07:30" and at.preset == "morning" and at.prompt is None
    days = parse_entry({"at": "22:00", "days": ["fri", "Saturday"], "prompt": " late  night "}, 1)
    assert days.when == "22:00 fri,sat" and days.prompt == "late night"
    assert days.spec.weekdays == {4, 5}
    cron = parse_entry({"cron": "30 7 * * 1-5", "preset": "focus"}, 2)
    assert cron.when == "cron 30 7 * * 1-5" and cron.spec.weekdays == {0, 1, 2, 3, 4}


def test_cron_fields():
    spec = parse_cron("*/15 9-17/4 * jan,Jul sun,7")
    assert spec.minutes == {0, 15, 30, 45} and spec.hours == {9, 13, 17}
    assert spec.months == {1, 7} and spec.weekdays == {6}
    assert parse_cron("5/20 0 * * *").minutes == {5, 25, 45}
    # Day of month and day of week both restricted: either matches (cron's rule).
    either = parse_cron("0 8 13 * fri")
    assert either.matches_day(datetime(2026, 3, 13).date())  # a Friday the 13th
    assert either.matches_day(datetime(2026, 3, 6).date())  # a Friday
    assert either.matches_day(datetime(2026, 4, 13).date())  # a Monday the 13th
    assert not either.matches_day(datetime(2026, 4, 14).date())
    both = parse_cron("0 8 13 * *")
    assert not both.matches_day(datetime(2026, 3, 6).date())


def test_every_bad_entry_is_one_line_naming_it_all_at_once():
    items = [
        {"at": "07:30", "preset": "morning"},
        {"at": "25:00", "preset": "x"},
        {"cron": "61 * * * *", "prompt": "p"},
        {"at": "07:00", "cron": "0 7 * * *", "preset": "x"},
        {"at": "07:00"},
        {"at": "07:00", "days": ["someday"], "preset": "x"},
        {"cron": "0 7 * * *", "days": ["mon"], "preset": "x"},
        "07:30 morning",
        {"at": "07:00", "preset": "x", "volume": 3},
        {"cron": "0 0 31 2 *", "preset": "x"},
        {"at": "07:00", "prompt": ""},
    ]
    with pytest.raises(ConfigError) as info:
        parse_config({"schedule": items, "playback": {"volume": 400}}, "cfg.yaml")
    lines = info.value.problems
    assert lines[0].startswith("cfg.yaml: playback.volume:")
    expected = [
        'cfg.yaml: schedule[1].at: expected a time HH:MM such as "07:30", got "25:00"',
        "cfg.yaml: schedule[2].cron: expected a cron expression",
        "cfg.yaml: schedule[3]: expected one of at or cron, got both",
        "cfg.yaml: schedule[4]: expected one of preset or prompt, got neither",
        "cfg.yaml: schedule[5].days: expected a list of days",
        "cfg.yaml: schedule[6].days: only with at",
        "cfg.yaml: schedule[7]: expected a mapping",
        "cfg.yaml: schedule[8].volume: unknown key",
        'cfg.yaml: schedule[9].cron: "0 0 31 2 *" never fires',
        "cfg.yaml: schedule[10].prompt: expected a non-empty prompt",
    ]
    assert len(lines) == 1 + len(expected)
    for line, start in zip(lines[1:], expected, strict=True):
        assert line.startswith(start), line
        assert "\n" not in line
    assert "(minute '61' is not between 0 and 59)" in lines[2]
    assert parse_config({"schedule": None}).schedule == []
    with pytest.raises(ConfigError, match="schedule: expected a list of entries"):
        parse_config({"schedule": {"at": "07:30"}})


# --- firings: DST and time zones --------------------------------------------------------


def test_daily_time_stays_local_across_dst():
    spec = parse_entry({"at": "07:30", "preset": "m"}, 0).spec
    before = next_firing(spec, utc(2026, 3, 28, 12), BERLIN)
    after = next_firing(spec, before, BERLIN)
    assert local(before) == "Sun 2026-03-29 07:30 CEST"  # first morning of summer time
    assert local(after) == "Mon 2026-03-30 07:30 CEST"
    assert after - before == 24 * 3600
    # The last morning of standard time is 06:30 UTC; the first of summer time, 05:30.
    assert before == utc(2026, 3, 29, 5, 30)
    assert next_firing(spec, utc(2026, 3, 27, 12), BERLIN) == utc(2026, 3, 28, 6, 30)


def test_a_time_skipped_in_spring_fires_when_the_clock_jumps_and_a_repeated_one_once():
    spec = parse_entry({"at": "02:30", "preset": "m"}, 0).spec
    spring = next_firing(spec, utc(2026, 3, 28, 12), BERLIN)
    assert local(spring) == "Sun 2026-03-29 03:30 CEST"  # 02:30 never happened that night
    autumn = next_firing(spec, utc(2026, 10, 24, 12), BERLIN)
    assert local(autumn) == "Sun 2026-10-25 02:30 CEST"  # the first of the two 02:30s
    again = next_firing(spec, autumn, BERLIN)
    assert local(again) == "Mon 2026-10-26 02:30 CET"  # not at the second 02:30 (CET)
    ny = next_firing(spec, utc(2026, 3, 7, 12), NEW_YORK)
    assert local(ny, NEW_YORK) == "Sun 2026-03-08 03:30 EDT"


def test_upcoming_merges_entries_in_order():
    entries = [
        parse_entry({"at": "22:00", "days": ["fri", "sat"], "prompt": "late"}, 0),
        parse_entry({"cron": "30 7 * * 1-5", "preset": "focus"}, 1),
    ]
    now = utc(2026, 12, 3, 12)  # Thursday 13:00 in Berlin
    got = upcoming(entries, now, BERLIN, count=4)
    assert [g["local"] for g in got] == [
        "2026-12-04T07:30+01:00",
        "2026-12-04T22:00+01:00",
        "2026-12-05T22:00+01:00",
        "2026-12-07T07:30+01:00",
    ]
    assert [g["entry"] for g in got] == [1, 0, 0, 1]
    assert got[0]["preset"] == "focus" and got[1]["prompt"] == "late"
    assert json.loads(json.dumps(got)) == got


def test_entry_in_force_is_the_latest_due():
    entries = [
        parse_entry({"at": "07:30", "preset": "morning"}, 0),
        parse_entry({"at": "22:00", "prompt": "night"}, 1),
    ]
    t, e = in_force(entries, utc(2026, 12, 3, 12), BERLIN)  # 13:00: the morning entry
    assert e.index == 0 and local(t) == "Thu 2026-12-03 07:30 CET"
    t, e = in_force(entries, utc(2026, 12, 3, 5), BERLIN)  # 06:00: last night's
    assert e.index == 1 and local(t) == "Wed 2026-12-02 22:00 CET"
    yearly = parse_entry({"cron": "0 9 1 1 *", "preset": "new-year"}, 0)
    assert local(last_firing(yearly.spec, utc(2026, 12, 3, 12), BERLIN)) == (
        "Thu 2026-01-01 09:00 CET"
    )


# --- the runner with an injected wall clock ---------------------------------------------


class FakeSession:
    """Records what the scheduler asks of the core (the Session's schedule-facing part)."""

    def __init__(self) -> None:
        self.preset: str | None = None
        self.prompt = "start"
        self.applied: list[str] = []
        self.events: list[tuple[str, dict]] = []

    def apply_preset(self, name: str) -> None:
        if name == "missing":
            raise NotFound("preset: no preset 'missing'")
        self.preset = name
        self.applied.append(f"preset {name}")

    def set_prompt(self, text: str) -> None:
        self.preset, self.prompt = None, text
        self.applied.append(f"prompt {text}")

    def emit(self, name: str, data: dict) -> None:
        self.events.append((name, data))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(now: float, *items: dict) -> tuple[Scheduler, FakeSession, Clock]:
    clock = Clock(now)
    session = FakeSession()
    entries = [parse_entry(item, i) for i, item in enumerate(items)]
    return Scheduler(session, entries, tz=BERLIN, clock=clock), session, clock


def test_start_applies_the_entry_in_force_once():
    s, session, _clock = make(
        utc(2026, 12, 3, 12), {"at": "07:30", "preset": "morning"}, {"at": "22:00", "prompt": "n"}
    )
    s.start_entry()
    assert session.applied == ["preset morning"]
    assert session.events[-1] == ("schedule", {"entry": 0, "preset": "morning", "prompt": None})
    s.start_entry()  # already in force: not applied again (no needless crossfade)
    assert session.applied == ["preset morning"]


def test_fires_on_time_and_naps_at_most_until_the_next_firing():
    s, session, clock = make(utc(2026, 12, 3, 6, 29), {"at": "07:30", "preset": "morning"})
    s.start_entry()
    session.applied.clear()
    nap = s.tick()
    assert nap == 30.0  # one minute to go: look again in 30 s
    clock.now = utc(2026, 12, 3, 6, 29, 50)
    assert s.tick() == pytest.approx(10.0)
    assert session.applied == []
    clock.now = utc(2026, 12, 3, 6, 30)
    s.tick()
    assert session.applied == ["preset morning"]
    clock.now += 30
    s.tick()
    assert session.applied == ["preset morning"]  # once


def test_clock_set_forwards_applies_only_the_latest_missed_entry():
    s, session, clock = make(
        utc(2026, 12, 3, 5),
        {"at": "07:30", "preset": "morning"},
        {"at": "12:00", "preset": "noon"},
        {"at": "22:00", "prompt": "night"},
    )
    s.start_entry()
    assert session.applied == ["prompt night"]  # 06:00: last night's entry
    clock.now = utc(2026, 12, 3, 13)  # suspended, or the clock set forwards, to 14:00
    s.tick()
    assert session.applied == ["prompt night", "preset noon"]


def test_clock_set_backwards_plans_again_from_the_new_time():
    s, session, clock = make(utc(2026, 12, 3, 6, 31), {"at": "07:30", "preset": "morning"})
    s.start_entry()
    assert session.applied == ["preset morning"]
    clock.now = utc(2026, 12, 3, 6, 0)  # set back to 07:00
    s.tick()
    assert session.applied == ["preset morning"]  # nothing new is due yet
    clock.now = utc(2026, 12, 3, 6, 30)  # 07:30 comes again: applied again
    session.preset = "other"
    s.tick()
    assert session.applied == ["preset morning", "preset morning"]


def test_a_failing_entry_is_reported_and_the_schedule_goes_on():
    s, session, clock = make(
        utc(2026, 12, 3, 6), {"at": "07:30", "preset": "missing"}, {"at": "08:00", "prompt": "p"}
    )
    s.start_entry()
    clock.now = utc(2026, 12, 3, 6, 30)
    s.tick()
    assert session.events[-1][0] == "error"
    assert (
        "schedule[0] (07:30: preset missing): preset: no preset" in session.events[-1][1]["message"]
    )
    clock.now = utc(2026, 12, 3, 7)
    s.tick()
    # Yesterday's 08:00 entry at start (07:00), then today's.
    assert session.applied == ["prompt p", "prompt p"]


def test_run_loop_wakes_from_the_wall_clock_and_on_replace():
    clock = Clock(utc(2026, 12, 3, 6, 29))
    session = FakeSession()
    naps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.now += seconds
        await asyncio.sleep(0)

    async def scenario():
        entries = [parse_entry({"at": "07:30", "preset": "morning"}, 0)]
        s = Scheduler(session, entries, tz=BERLIN, clock=clock, sleep=fake_sleep)
        task = asyncio.create_task(s.run())
        while len(session.applied) < 2:
            await asyncio.sleep(0)
        s.replace([parse_entry({"at": "07:31", "prompt": "later"}, 0)])
        while "prompt later" not in session.applied:
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    # 07:29 start (the previous day's 07:30 is in force), then 07:30 on time, then 07:31.
    assert session.applied == ["preset morning", "preset morning", "prompt later"]
    assert all(n <= 30.0 for n in naps)


# --- the daemon ---------------------------------------------------------------------------


def test_ctl_schedule_lists_next_firings_and_a_bad_preset_stops_the_daemon(tmp_path):
    cfg = base_config(tmp_path / "out.wav")
    cfg["output"] = {"backend": "null"}
    cfg["schedule"] = [
        {"at": "07:30", "preset": "rain"},
        {"cron": "0 22 * * fri,sat", "prompt": "late night deep house"},
    ]
    d = Daemon(tmp_path, cfg)
    try:
        d.start(wait_loop=False)
        got = d.json("schedule", "--count", "3")["firings"]
        assert len(got) == 3 and [g["time"] for g in got] == sorted(g["time"] for g in got)
        assert {g["entry"] for g in got} <= {0, 1}
        out = d.ok("schedule")
        assert "preset rain  (schedule[0]: 07:30)" in out
        assert '"late night deep house"  (schedule[1]: cron 0 22 * * fri,sat)' in out
        # The entry in force at start was applied.
        st = d.json("status")
        assert st["preset"] == "rain" or st["prompt"] == "late night deep house"
    finally:
        d.stop()
        d.close()
    cfg["schedule"] = [{"at": "07:30", "preset": "nosuch"}]
    d.write_config(cfg)
    r = subprocess.run(
        [sys.executable, "-m", "infiniloopd", "--config", str(d.config_path)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "schedule[0].preset: no preset 'nosuch' (presets: " in r.stderr
