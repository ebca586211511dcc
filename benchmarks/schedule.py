"""Cost of the schedule on the event loop: parsing, listing, one wake-up of the runner.

A mix of eight entries (four daily times, days, weekday cron, a yearly cron and an
every-15-minutes cron) in Europe/Berlin. The runner wakes at most every 30 s.

    python3 benchmarks/schedule.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infiniloopd.core.schedule import Scheduler, in_force, parse_entry, upcoming

ITEMS = [
    *({"at": at, "preset": "x"} for at in ("07:30", "12:00", "18:00", "22:00")),
    {"at": "22:00", "days": ["fri", "sat"], "prompt": "late"},
    {"cron": "30 7 * * 1-5", "preset": "focus"},
    {"cron": "0 9 1 1 *", "preset": "new-year"},
    {"cron": "*/15 * * * *", "prompt": "quarter"},
]


class Sink:
    """Takes what the scheduler applies and does nothing with it."""

    preset = None
    prompt = ""

    def apply_preset(self, name: str) -> None: ...

    def set_prompt(self, text: str) -> None: ...

    def emit(self, name: str, data: dict) -> None: ...


def timed(label: str, fn, repeats: int) -> None:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    print(f"{label}: {(time.perf_counter() - t0) / repeats * 1000:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    tz = ZoneInfo("Europe/Berlin")
    entries = [parse_entry(item, i) for i, item in enumerate(ITEMS)]
    now = time.time()
    timed(
        "parse 8 entries", lambda: [parse_entry(it, i) for i, it in enumerate(ITEMS)], args.repeats
    )
    timed("upcoming(10)", lambda: upcoming(entries, now, tz, 10), args.repeats)
    timed("entry in force (start)", lambda: in_force(entries, now, tz), args.repeats)
    runner = Scheduler(Sink(), entries, tz=tz)
    runner.start_entry()
    timed("one wake-up of the runner", runner.tick, args.repeats)


if __name__ == "__main__":
    main()
