"""Generator processes: none outlives the daemon, none holds it up, none fills its memory.

Real child processes (the venv's interpreter running small scripts) that do what a
badly behaved generator does: leave a helper in its own session holding the output
pipe, print megabytes, outlive a daemon killed with SIGKILL, write a clip whose
header claims an hour.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.generators.base import (
    OUTPUT_KEEP,
    GeneratorError,
    check_clip,
    kill_orphaned_generators,
    run_process,
)

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


# A generator that starts a helper in its own session (setsid), which keeps the output
# pipe open and sleeps for five minutes, then exits at once.
LEAVES_HELPER = """
    import os, sys, time
    pidfile = sys.argv[1]
    if os.fork() == 0:
        os.setsid()
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
        print("helper running", flush=True)
        time.sleep(300)
        os._exit(0)
    while not os.path.exists(pidfile) or not open(pidfile).read():
        time.sleep(0.01)
    print("generator done", flush=True)
"""


def test_a_helper_holding_the_pipe_neither_holds_us_up_nor_survives(tmp_path):
    gen = script(tmp_path, "gen", LEAVES_HELPER)
    pidfile = tmp_path / "helper.pid"

    async def main():
        # Far shorter than the helper's five minutes: returning at all is the point.
        return await asyncio.wait_for(
            run_process([str(gen), str(pidfile)], timeout=120, who="gen"), 30
        )

    result = asyncio.run(main())
    assert result.returncode == 0
    assert "generator done" in result.output
    helper = int(pidfile.read_text())
    assert wait_gone(helper), "the helper in its own session outlived the generator"


def test_a_timeout_kills_the_helpers_too(tmp_path):
    gen = script(
        tmp_path,
        "gen",
        LEAVES_HELPER.replace('print("generator done", flush=True)', "time.sleep(300)"),
    )
    pidfile = tmp_path / "helper.pid"

    async def main():
        return await asyncio.wait_for(
            run_process([str(gen), str(pidfile)], timeout=10, who="gen"), 60
        )

    with pytest.raises(GeneratorError, match="no result after 10 s"):
        asyncio.run(main())
    assert wait_gone(int(pidfile.read_text()))


def test_only_the_last_64_kb_of_output_are_kept(tmp_path):
    gen = script(
        tmp_path,
        "gen",
        """
        import sys
        line = "x" * 99 + "\\n"
        for _ in range(100_000):  # 10 MB
            sys.stdout.write(line)
        print("error: the last words")
        sys.exit(3)
        """,
    )
    seen = []
    result = asyncio.run(run_process([str(gen)], timeout=60, who="gen", on_output=seen.append))
    assert result.returncode == 3
    assert len(result.output) <= OUTPUT_KEEP
    assert result.output.endswith("error: the last words\n")
    assert sum(map(len, seen)) > 10_000_000  # all of it was streamed, only the tail kept


def test_a_generator_dies_with_its_daemon_and_helpers_are_swept_at_the_next_start(tmp_path):
    gen = script(
        tmp_path,
        "gen",
        """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            with open(sys.argv[2], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(300)
            os._exit(0)
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(300)
        """,
    )
    gen_pid, helper_pid = tmp_path / "gen.pid", tmp_path / "helper.pid"
    # A stand-in daemon: runs the generator, then is killed with SIGKILL (no cleanup).
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from infiniloopd.generators.base import run_process\n"
            "asyncio.run(run_process(sys.argv[1:], timeout=600, who='gen'))\n",
            str(gen),
            str(gen_pid),
            str(helper_pid),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while not (gen_pid.exists() and helper_pid.exists() and helper_pid.read_text()):
            assert time.monotonic() < deadline, "the generator did not start"
            time.sleep(0.05)
        child, helper = int(gen_pid.read_text()), int(helper_pid.read_text())
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        assert wait_gone(child), "the generator outlived its daemon"
        # The helper left its session and the daemon's death; the next start finds it.
        assert alive(helper)
        assert kill_orphaned_generators() >= 1
        assert wait_gone(helper)
    finally:
        daemon.kill()
        daemon.wait(10)


def test_a_clip_is_checked_by_its_header_before_it_is_decoded(tmp_path):
    path = tmp_path / "long.wav"
    # Refused from what sf.info reads (the header), before sf.read decodes anything.
    sf.write(str(path), np.full((8000 * 40, 1), 0.1, dtype=np.float32), 8000)
    with pytest.raises(GeneratorError, match=r"long \(by its header\), expected about 10 s"):
        asyncio.run(check_clip(path, 10.0, "gen"))


def test_checking_a_big_clip_leaves_the_event_loop_free(tmp_path):
    path = tmp_path / "big.wav"
    rng = np.random.default_rng(1)
    sf.write(str(path), 0.1 * rng.standard_normal((48000 * 30, 2)).astype(np.float32), 48000)
    ticks_during: list[int] = []

    async def main():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        check = asyncio.create_task(check_clip(path, 30.0, "gen"))
        facts = await check
        ticks_during.append(ticks)
        done = True
        await task
        return facts

    facts = asyncio.run(main())
    assert facts.seconds == pytest.approx(30.0)
    # The loop ran while the clip was decoded and checked, not only before or after.
    assert ticks_during[0] > 3


def test_only_generators_whose_owner_is_gone_are_swept():
    from infiniloopd.generators.base import TAG_ENV, _start_time

    me = os.getpid()
    live_tag = f"{me}-{_start_time(me)}-live"  # this process: alive, whatever its name
    gone_tag = f"{me}-1-gone"  # same pid, another start time: a reused pid
    sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
    live = subprocess.Popen(sleep, env={**os.environ, TAG_ENV: live_tag})
    gone = subprocess.Popen(sleep, env={**os.environ, TAG_ENV: gone_tag})
    try:
        time.sleep(0.3)  # their environments are in place
        kill_orphaned_generators()
        assert wait_gone(gone.pid), "a generator of a gone daemon was left running"
        assert alive(live.pid), "a live process's generator was killed"
    finally:
        for p in (live, gone):
            p.kill()
            p.wait()
