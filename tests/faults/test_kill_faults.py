"""SIGKILL while a loop is being written: no torn file is ever read back (atomic
writes), and the next start cleans the leftovers and plays at once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.daemon_proc import Daemon
from tests.faults.conftest import fault_config

pytestmark = pytest.mark.slow


def leftovers(loops: Path) -> list[str]:
    names = {p.name for p in loops.iterdir()}
    bad = [n for n in names if n.endswith(".tmp")]
    bad += [n for n in names if n.endswith(".flac") and n[:-5] + ".json" not in names]
    return sorted(bad)


def test_sigkill_while_writing_a_loop(tmp_path):
    cfg = fault_config(
        tmp_path / "out.wav",
        generator={"seconds": 5, "prefetch": 4},
        playback={"min_play": 3600},
    )
    d = Daemon(tmp_path, cfg)
    loops = tmp_path / "data" / "infiniloop" / "loops"
    try:
        d.start()
        # Catch it with a temp file open in the library (the FLAC being written).
        caught = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if loops.exists() and any(n.endswith(".tmp") for n in os.listdir(loops)):
                d.proc.send_signal(signal.SIGKILL)
                caught = True
                break
            time.sleep(0.001)
        if not caught:
            d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        before = leftovers(loops)
        if not caught:
            pytest.fail("never caught the daemon writing a loop within 60 s")
        assert before, "killed while writing, yet nothing was left over?"
        # Leftovers a crash at other moments would leave: a torn temp sidecar, an orphan
        # (and truncated) FLAC whose sidecar was never published.
        entries = sorted(p for p in loops.glob("*.flac"))
        good = entries[0].read_bytes()
        (loops / "20990101-000000-aaaaaa.flac").write_bytes(good[: len(good) // 3])
        (loops / ".20990101-000000-bbbbbb.json.tmp").write_text('{"id": "2099')
        (loops / ".20990101-000000-cccccc.flac.tmp").write_bytes(good[:1000])

        # The next start: leftovers gone, every loop it lists reads back whole.
        d.start(wait_loop=False)
        st = d.status()
        assert st["loop"] is not None  # plays from the library at once
        assert leftovers(loops) == []
        lib = d.json("library", "--limit", "1000")
        assert lib["loops"] >= 1
        for e in lib["entries"]:
            path = loops / f"{e['id']}.flac"
            audio, rate = sf.read(path, dtype="float32")
            assert rate == e["rate"]
            assert abs(len(audio) / rate - e["seconds"]) < 1e-3, (e["id"], len(audio))
        assert "20990101-000000-aaaaaa" not in {e["id"] for e in lib["entries"]}
        assert "Traceback" not in d.log()
    finally:
        d.stop()
        d.close()
