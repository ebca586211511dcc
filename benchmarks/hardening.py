"""How long the event loop is held up while hostile input is dealt with, and how fast
each reader refuses it.

A ticker task on an asyncio loop records the longest gap between its 1 ms sleeps while:
a generator clip (30 s and 120 s, stereo 48 kHz) is checked (check_clip), a 256 KB
config is parsed in a thread (as `reload` does), a control server receives 64 MB
requests it must drop. Then how long each reader takes to refuse an alias bomb,
a 400-digit number, 100 000 levels of JSON nesting and a non-UTF-8 state file.

    python3 benchmarks/hardening.py
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from infiniloopd import protocol
from infiniloopd.config import ConfigError, load_config
from infiniloopd.errors import UserError
from infiniloopd.frontends.zmq.server import Command, ControlServer
from infiniloopd.generators.base import check_clip
from infiniloopd.library import read_sidecar
from infiniloopd.state import load_state


async def longest_stall(work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(longest gap between ticks in ms, wall time of `work` in s)."""
    gaps = [0.0]
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    await work()
    wall = time.perf_counter() - t0
    done = True
    await task
    return max(gaps) * 1000, wall


def clip(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    sf.write(str(path), 0.1 * rng.standard_normal((int(48000 * seconds), 2)), 48000)
    return path


async def flood(endpoint: str) -> None:
    sender = (
        "import sys, zmq\n"
        "s = zmq.Context().socket(zmq.DEALER); s.connect(sys.argv[1])\n"
        "big = b'x' * (64 << 20)\n"
        "[s.send_multipart([b'', big]) for _ in range(3)]\n"
        "s.close(linger=20000)\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", sender, endpoint)
    await proc.wait()


def timed(fn: Callable[[], object]) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        fn()
        outcome = "accepted"
    except (UserError, ConfigError) as exc:
        outcome = str(exc).split(": ", 1)[-1][:60]
    return (time.perf_counter() - t0) * 1000, outcome


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="infiniloop-hardening-"))
    big_config = tmp / "big.yaml"
    big_config.write_text("# " + "x" * 250_000 + "\nprompt: calm\n")
    endpoint = f"ipc://{tmp / 'control.sock'}"

    async def run() -> list[tuple[str, float, float]]:
        rows = []
        # What the machine itself costs (other processes, the scheduler): the baseline.
        stall, wall = await longest_stall(lambda: asyncio.sleep(1.0))
        rows.append(("nothing (1 s idle: baseline)", stall, wall))
        for seconds in (30, 120):
            path = clip(tmp / f"clip{seconds}.wav", seconds)
            stall, wall = await longest_stall(lambda p=path, s=seconds: check_clip(p, s, "bench"))
            rows.append((f"check_clip, {seconds} s stereo clip", stall, wall))
        stall, wall = await longest_stall(lambda: asyncio.to_thread(load_config, big_config))
        rows.append(("reload of a 256 KB config (thread)", stall, wall))
        ep = protocol.Endpoints(endpoint, endpoint.replace("control", "events"))
        server = ControlServer(ep, {"ping": Command("ping", lambda _a: {})})
        server.start()
        serve = asyncio.create_task(server.serve())
        stall, wall = await longest_stall(lambda: flood(endpoint))
        rows.append(("3 x 64 MB requests dropped by the server", stall, wall))
        server.close()
        serve.cancel()
        return rows

    print(f"{'while':44} {'longest loop stall ms':>22} {'wall s':>8}")
    for name, stall, wall in asyncio.run(run()):
        print(f"{name:44} {stall:22.1f} {wall:8.2f}")

    bomb = tmp / "bomb.yaml"
    bomb.write_text(
        'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        + "".join(
            f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
    )
    huge_int = tmp / "int.yaml"
    huge_int.write_text("output:\n  rate: " + "9" * 400 + "\n")
    deep = tmp / "20260101-000000-abcdef.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    state = tmp / "state.json"
    print()
    print(f"{'refusing':44} {'ms':>8}  message")
    for name, fn in (
        ("config alias bomb (333 bytes)", lambda: load_config(bomb)),
        ("config 400-digit integer", lambda: load_config(huge_int)),
        ("sidecar nested 100 000 deep", lambda: read_sidecar(deep)),
    ):
        ms, outcome = timed(fn)
        print(f"{name:44} {ms:8.2f}  {outcome}")
    state.write_bytes(b'{"prompt": "\xff"}')
    ms, _ = timed(lambda: load_state(state))
    print(f"{'state.json not UTF-8 (moved aside)':44} {ms:8.2f}")
    subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
