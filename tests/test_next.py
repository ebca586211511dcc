"""`infiniloopctl next` when no other loop is ready: accepted, announced, then carried out.

The real daemon runs with the MusicGPT stand-in made slow (a clip takes seconds), so
there are stretches where the next loop is still being generated.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.daemon_proc import Daemon, base_config
from tests.programs import python_program

pytestmark = pytest.mark.slow
FAKE_SCRIPT = Path(__file__).with_name("fake_musicgpt.py")


def slow_musicgpt(root: Path, *, fail: str = "", speed: str = "0.6") -> Daemon:
    binary = python_program(root / "musicgpt", FAKE_SCRIPT)
    cfg = base_config(root / "out.wav")
    cfg["generator"] = {
        "backend": "musicgpt",
        "binary": str(binary),
        "seconds": 6,
        "prefetch": 1,
        "timeout": 60,
    }
    cfg["playback"]["min_play"] = 3600  # only `next` switches
    d = Daemon(root, cfg)
    d.env.update(
        FAKE_MUSICGPT_SPEED=speed,  # 6 s clips take 3.6 s
        FAKE_MUSICGPT_DOWNLOAD="0.05",
        FAKE_MUSICGPT_FAIL=fail,
    )
    return d


def test_next_waits_for_the_loop_being_generated(tmp_path):
    d = slow_musicgpt(tmp_path)
    try:
        d.start()
        # A new prompt: once its first loop plays, the library holds no other loop of
        # it, and the next one is still being generated.
        d.ok("prompt", "a fresh prompt")
        st = d.wait_status(
            lambda s: s["loop"]["prompt"] == "a fresh prompt" and s["queue"] == 0,
            60,
            "the first loop of the new prompt",
        )
        playing = st["loop"]["id"]
        played = st["loops_played"]

        r = d.ctl("next")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("next: as soon as"), r.stdout
        st = d.status()
        assert st["skip_pending"] is True
        assert "next pending" in d.ok("status")
        assert st["loop"]["id"] == playing  # nothing switched yet
        again = d.json("next")  # a second press does not queue a second skip
        assert again["pending"] is True

        st = d.wait_status(lambda s: s["loop"]["id"] != playing, 60, "the pending skip")
        assert st["skip_pending"] is False
        assert st["loops_played"] == played + 1
        assert d.json("history")["entries"][0]["id"] == st["loop"]["id"]
        # Only one skip was queued: the loop after it stays (min_play is an hour).
        switched_to = st["loop"]["id"]
        d.wait_status(lambda s: s["queue"] >= 1, 60, "another ready loop")
        time.sleep(1.0)
        st = d.status()
        assert (st["loop"]["id"], st["loops_played"]) == (switched_to, played + 1)
    finally:
        d.stop()
        d.close()


def test_next_refused_when_no_loop_can_come(tmp_path):
    d = slow_musicgpt(tmp_path, fail="crash", speed="0.02")
    try:
        d.start(wait_loop=False)
        d.wait_status(lambda s: s["consecutive_failures"] >= 1, 60, "a generator failure")
        r = d.ctl("next")
        assert r.returncode == 1
        assert "generator is failing" in r.stderr and "library has none" in r.stderr, r.stderr
        assert d.status()["skip_pending"] is False
    finally:
        d.stop()
        d.close()
