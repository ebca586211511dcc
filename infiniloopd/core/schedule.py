"""The schedule: moods by the clock, from the config's `schedule:` list.

Entries are `{at: "07:30", preset: morning}`, `{at: "22:00", days: [fri, sat],
prompt: "..."}` or `{cron: "30 7 * * 1-5", preset: focus}`. All three become one
`CronSpec` (a small parser written here: five fields, `*`, lists, ranges, steps and
names, with cron's rule that a restricted day-of-month and day-of-week match either).

Times are local wall-clock times in the system's time zone (zoneinfo), so a firing
follows DST: a time skipped by the spring change (02:30 on that night) fires when the
clock jumps (at 03:30), and a time that happens twice in autumn fires once, the first
time. The runner re-reads the wall clock at every wake-up (at most every
`MAX_NAP` seconds) instead of trusting monotonic delays, so a clock set forwards
applies the entry now in force, and one set backwards plans again from the new time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from infiniloopd.core.errors import CoreError
from infiniloopd.text import text_problem

log = logging.getLogger(__name__)

MAX_NAP = 30.0  # seconds between looks at the wall clock
LOOKAHEAD_DAYS = 366 * 5  # "0 0 29 2 *" fires once in four years; nothing rarer is valid
LOOKBACK_DAYS = 366  # how far back the entry in force at start is searched
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
ENTRY_KEYS = ("at", "cron", "days", "preset", "prompt")
_AT_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_PRESET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class ScheduleError(ValueError):
    """A schedule entry that cannot be used; the message is what was expected."""


# --- cron expressions ---------------------------------------------------------------------


@dataclass(frozen=True)
class CronSpec:
    """The set of local wall-clock minutes a schedule entry fires at."""

    minutes: frozenset[int]
    hours: frozenset[int]
    monthdays: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday, as date.weekday()
    monthday_any: bool = True
    weekday_any: bool = True

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.monthdays
        dow = day.weekday() in self.weekdays
        if not self.monthday_any and not self.weekday_any:
            return dom or dow  # cron: either restricted day field matches
        return dom and dow

    def times(self) -> list[tuple[int, int]]:
        return sorted((h, m) for h in self.hours for m in self.minutes)


_FIELDS = (  # name, low, high, names (index + offset is the value)
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day of month", 1, 31, (), 0),
    ("month", 1, 12, MONTH_NAMES, 1),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"), 0),
)


def _value(text: str, field: tuple) -> int:
    name, lo, hi, names, offset = field
    low = text.lower()
    if low in names:
        return names.index(low) + offset
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ScheduleError(f"{name} {text!r} is not between {lo} and {hi}")
    return int(text)


def _parse_field(text: str, field: tuple) -> tuple[frozenset[int], bool]:
    name, lo, hi, _names, _offset = field
    values: set[int] = set()
    for part in text.split(","):
        rng, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"{name} step {step_text!r} is not a positive number")
            step = int(step_text)
        if rng == "*":
            first, last = lo, hi
        elif "-" in rng:
            a, _, b = rng.partition("-")
            first, last = _value(a, field), _value(b, field)
            if first > last:
                raise ScheduleError(f"{name} range {rng!r} runs backwards")
        else:
            first = _value(rng, field)
            last = hi if slash else first  # "5/15": from 5 on, every 15
        values.update(range(first, last + 1, step))
    return frozenset(values), text == "*"


def parse_cron(text: str) -> CronSpec:
    """A five-field cron expression (minute hour day-of-month month day-of-week)."""
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"five fields (minute hour day month weekday), got {len(fields)}")
    parsed = [_parse_field(f, spec) for f, spec in zip(fields, _FIELDS, strict=True)]
    (minutes, _), (hours, _), (monthdays, dom_any), (months, _), (cron_days, dow_any) = parsed
    weekdays = frozenset((d - 1) % 7 for d in cron_days)  # cron 0/7 = Sunday -> 6
    return CronSpec(minutes, hours, monthdays, months, weekdays, dom_any, dow_any)


def spec_at(hour: int, minute: int, days: frozenset[int] | None = None) -> CronSpec:
    every = frozenset(range(7))
    return CronSpec(
        frozenset({minute}),
        frozenset({hour}),
        frozenset(range(1, 32)),
        frozenset(range(1, 13)),
        every if days is None else days,
        True,
        days is None,
    )


# --- entries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One schedule entry: when (a CronSpec) and what (a preset or a prompt)."""

    index: int
    spec: CronSpec
    when: str  # as written: "07:30 fri,sat" or "cron 30 7 * * 1-5"
    preset: str | None = None
    prompt: str | None = None

    @property
    def what(self) -> str:
        return f"preset {self.preset}" if self.preset else f"prompt {self.prompt!r}"

    def describe(self) -> str:
        return f"schedule[{self.index}] ({self.when}: {self.what})"


def _show(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_entry(item: Any, index: int) -> Entry:
    """An Entry from one item of the config's list; ScheduleError('key: expected ...')."""
    key = f"schedule[{index}]"
    example = '{at: "07:30", preset: morning} or {cron: "30 7 * * 1-5", prompt: "..."}'
    if not isinstance(item, dict):
        raise ScheduleError(f"{key}: expected a mapping such as {example}, got {_show(item)}")
    for k in item:
        if k not in ENTRY_KEYS:
            raise ScheduleError(
                f"{key}.{str(k)[:40]}: unknown key (known keys: {', '.join(ENTRY_KEYS)})"
            )
    if ("at" in item) == ("cron" in item):
        got = "both" if "at" in item else "neither"
        raise ScheduleError(f"{key}: expected one of at or cron, got {got}")
    if ("preset" in item) == ("prompt" in item):
        got = "both" if "preset" in item else "neither"
        raise ScheduleError(f"{key}: expected one of preset or prompt, got {got}")
    if "at" in item:
        at = item["at"]
        match = _AT_RE.match(at) if isinstance(at, str) else None
        if match is None:
            raise ScheduleError(f'{key}.at: expected a time HH:MM such as "07:30", got {_show(at)}')
        days = None
        when = f"{int(match.group(1)):02d}:{match.group(2)}"
        if "days" in item:
            days = _parse_days(item["days"], f"{key}.days")
            when += " " + ",".join(DAY_NAMES[d] for d in sorted(days))
        spec = spec_at(int(match.group(1)), int(match.group(2)), days)
    else:
        if "days" in item:
            raise ScheduleError(f"{key}.days: only with at (a cron expression has its own days)")
        cron = item["cron"]
        if text_problem(cron, max_len=200) is not None:
            raise ScheduleError(f'{key}.cron: expected a cron expression such as "30 7 * * 1-5"')
        try:
            spec = parse_cron(cron)
        except ScheduleError as exc:
            raise ScheduleError(
                f'{key}.cron: expected a cron expression such as "30 7 * * 1-5" ({exc}), '
                f"got {_show(cron)}"
            ) from None
        if not any(spec.matches_day(date(2024, 1, 1) + timedelta(d)) for d in range(366 * 4)):
            raise ScheduleError(f"{key}.cron: {_show(cron)} never fires")
        when = "cron " + " ".join(cron.split())
    if "preset" in item:
        preset = item["preset"]
        if not isinstance(preset, str) or not _PRESET_RE.match(preset):
            raise ScheduleError(f"{key}.preset: expected a preset name, got {_show(preset)}")
        return Entry(index, spec, when, preset=preset)
    prompt = item["prompt"]
    if text_problem(prompt, max_len=1000) is not None:
        raise ScheduleError(
            f"{key}.prompt: expected a non-empty prompt of at most 1000 characters, "
            f"got {_show(prompt)}"
        )
    return Entry(index, spec, when, prompt=" ".join(prompt.split()))


def _parse_days(value: Any, key: str) -> frozenset[int]:
    expected = f"{key}: expected a list of days such as [mon, fri] ({', '.join(DAY_NAMES)})"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ScheduleError(f"{expected}, got {_show(value)}")
    days = set()
    for day in value:
        name = day.lower()[:3] if isinstance(day, str) else None
        if name not in DAY_NAMES or day.lower() not in (name, _FULL_DAYS[DAY_NAMES.index(name)]):
            raise ScheduleError(f"{expected}, got {_show(day)}")
        days.add(DAY_NAMES.index(name))
    return frozenset(days)


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_schedule(items: list[Any]) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Entries from the config list, and (key, message) for each bad one (one line each)."""
    entries, problems = [], []
    for i, item in enumerate(items):
        try:
            entries.append(parse_entry(item, i))
        except ScheduleError as exc:
            problems.append((f"schedule[{i}]", str(exc)))
    return entries, problems


# --- when entries fire ----------------------------------------------------------------


def local_zone() -> tzinfo:
    """The system's time zone as a zoneinfo zone ($TZ, else /etc/localtime), else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError) as exc:
        log.warning("schedule: cannot read the local time zone (%s); using UTC", exc)
        return UTC


def _instants_on(spec: CronSpec, day: date, tz: tzinfo) -> list[float]:
    """The epoch seconds the spec fires at on a local day it matches, ascending.

    fold=0 picks the first of two repeated times; a skipped time converts with the
    offset before the change, i.e. to the moment the clock jumped past it.
    """
    out = set()
    for h, m in spec.times():
        out.add(datetime(day.year, day.month, day.day, h, m, tzinfo=tz).timestamp())
    return sorted(out)


def firings(spec: CronSpec, after: float, tz: tzinfo) -> Iterator[float]:
    """The firings strictly after `after` (epoch seconds), ascending, for up to 5 years."""
    start = datetime.fromtimestamp(after, tz).date() - timedelta(days=1)
    for d in range(LOOKAHEAD_DAYS):
        day = start + timedelta(days=d)
        if spec.matches_day(day):
            yield from (t for t in _instants_on(spec, day, tz) if t > after)


def next_firing(spec: CronSpec, after: float, tz: tzinfo) -> float | None:
    """The first firing strictly after `after` (epoch seconds), or None within 5 years."""
    return next(firings(spec, after, tz), None)


def last_firing(spec: CronSpec, at: float, tz: tzinfo) -> float | None:
    """The last firing at or before `at` (epoch seconds), or None within a year."""
    start = datetime.fromtimestamp(at, tz).date() + timedelta(days=1)
    for d in range(LOOKBACK_DAYS + 2):
        day = start - timedelta(days=d)
        if not spec.matches_day(day):
            continue
        for t in reversed(_instants_on(spec, day, tz)):
            if t <= at:
                return t
    return None


def upcoming(entries: list[Entry], now: float, tz: tzinfo, count: int = 10) -> list[dict]:
    """The next `count` firings of all entries after `now`, soonest first."""

    def stream(entry: Entry) -> Iterator[tuple[float, int, Entry]]:
        for t in itertools.islice(firings(entry.spec, now, tz), count):
            yield t, entry.index, entry

    streams = [stream(entry) for entry in entries]
    merged = heapq.merge(*streams, key=lambda x: (x[0], x[1]))
    return [firing_json(t, e, tz) for t, _i, e in itertools.islice(merged, count)]


def firing_json(t: float, entry: Entry, tz: tzinfo) -> dict[str, Any]:
    local = datetime.fromtimestamp(t, tz)
    return {
        "time": t,
        "local": local.isoformat(timespec="minutes"),
        "entry": entry.index,
        "when": entry.when,
        "preset": entry.preset,
        "prompt": entry.prompt,
    }


def in_force(entries: list[Entry], at: float, tz: tzinfo) -> tuple[float, Entry] | None:
    """The entry whose firing is the latest at or before `at` (a later index wins a tie)."""
    best: tuple[float, Entry] | None = None
    for entry in entries:
        t = last_firing(entry.spec, at, tz)
        if t is not None and (best is None or (t, entry.index) >= (best[0], best[1].index)):
            best = (t, entry)
    return best


# --- the runner -------------------------------------------------------------------------


class Scheduler:
    """Applies schedule entries to the session when they fire (see the module docstring)."""

    def __init__(
        self,
        session: Any,
        entries: list[Entry],
        *,
        tz: tzinfo | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.entries = list(entries)
        self.tz = tz or local_zone()
        self.clock = clock
        self._sleep = sleep
        self._last: float | None = None  # the wall-clock time of the last look
        self._wake = asyncio.Event()

    def replace(self, entries: list[Entry]) -> None:
        """New entries (a config reload): planned from now, nothing re-applied."""
        self.entries = list(entries)
        self._wake.set()

    def upcoming(self, count: int = 10) -> list[dict[str, Any]]:
        return upcoming(self.entries, self.clock(), self.tz, count)

    def start_entry(self) -> None:
        """Apply the entry in force now, unless the session already has what it sets."""
        now = self.clock()
        self._last = now
        found = in_force(self.entries, now, self.tz)
        if found is None:
            return
        _t, entry = found
        if entry.preset is not None and self.session.preset == entry.preset:
            return
        if entry.prompt is not None and self.session.prompt == entry.prompt:
            return
        self.apply(entry, at_start=True)

    def apply(self, entry: Entry, *, at_start: bool = False) -> None:
        log.info("%s%s", entry.describe(), " (in force at start)" if at_start else "")
        try:
            if entry.preset is not None:
                self.session.apply_preset(entry.preset)
            else:
                self.session.set_prompt(entry.prompt)
        except CoreError as exc:
            log.warning("%s: %s", entry.describe(), exc)
            self.session.emit("error", {"message": f"{entry.describe()}: {exc}"})
            return
        self.session.emit(
            "schedule", {"entry": entry.index, "preset": entry.preset, "prompt": entry.prompt}
        )

    def tick(self) -> float:
        """One look at the wall clock: apply what fell due since the last; the next nap."""
        now = self.clock()
        last = now if self._last is None else self._last
        if now < last:
            log.info("schedule: the clock went back %.0f s; planning from now", last - now)
            last = now
        due = in_force(self.entries, now, self.tz)
        if due is not None and due[0] > last:
            # Several firings missed (a clock set forwards, a suspend): the latest wins.
            self.apply(due[1])
        self._last = now
        nexts = [t for e in self.entries if (t := next_firing(e.spec, now, self.tz)) is not None]
        return max(0.05, min([MAX_NAP, *(t - now for t in nexts)]))

    async def run(self) -> None:
        self.start_entry()
        while True:
            nap = self.tick()
            self._wake.clear()
            sleeper = asyncio.ensure_future(self._sleep(nap))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
