#!/usr/bin/env python3
"""musicgpt-server throughput: clips per hour with one and with two servers.

    python3 benchmarks/musicgpt_server.py [--gen-seconds 2] [--clips 10] [--seconds 10]

Stand-in MusicGPT servers (tests/fake_musicgpt_server.py, each taking --gen-seconds of
wall time per clip, one clip at a time like the real server) are driven by the real
musicgpt-server generator, with as many clips in flight as the producer would run
(`generator.concurrency`). Every clip goes the whole way: request over the WebSocket,
progress, result, download over HTTP, validation. Rows:

- 1 server, concurrency 1: the baseline;
- 2 servers, concurrency 1: one clip at a time cannot use the second server;
- 2 servers, concurrency 2: each server works on a clip, so throughput doubles
  (less the time each server waits while its clip is fetched and checked);
- 1 server, concurrency 2 and 2 servers, concurrency 4: one request queued behind the
  running one on each server, so no server waits for the fetch: the doubling again.

Prints clips per hour, the speed-up over the baseline, and the clips each server made.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infiniloopd.config import GeneratorConfig  # noqa: E402
from infiniloopd.generators.musicgpt_server import MusicGPTServerGenerator  # noqa: E402
from tests import fake_musicgpt_server as fake  # noqa: E402


async def produce(gen, clips: int, concurrency: int, seconds: float, spool: Path) -> float:
    """Make `clips` clips with `concurrency` in flight; returns the wall time."""
    todo = list(range(clips))

    async def worker() -> None:
        while todo:
            i = todo.pop()
            out = spool / f"clip-{i}.wav"
            await gen.generate(f"benchmark song {i}", seconds, out, lambda f: None, seed=i)
            out.unlink()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - t0


def measure(servers: int, concurrency: int, args, tmp: Path) -> tuple[float, list[int]]:
    procs = [
        fake.start(tmp / f"s{servers}-{concurrency}-{i}", "--gen-seconds", str(args.gen_seconds))
        for i in range(servers)
    ]
    try:
        cfg = GeneratorConfig(
            backend="musicgpt-server", servers=[p.url for p in procs], timeout=600
        )
        gen = MusicGPTServerGenerator(cfg)
        spool = tmp / "spool"
        spool.mkdir(exist_ok=True)

        async def both() -> tuple[float, list[int]]:
            # A clip first, so connecting is not counted (the daemon keeps connections).
            await produce(gen, 1, 1, args.seconds, spool)
            before = [s["ok"] for s in gen.servers]
            wall = await produce(gen, args.clips, concurrency, args.seconds, spool)
            return wall, [s["ok"] - b for s, b in zip(gen.servers, before, strict=True)]

        wall, made = asyncio.run(both())
        return args.clips / wall * 3600, made
    finally:
        for p in procs:
            p.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gen-seconds", type=float, default=2.0, help="stand-in time per clip")
    p.add_argument("--clips", type=int, default=10, help="clips per measurement")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    args = p.parse_args()
    print(
        f"stand-in: {args.gen_seconds:g} s per clip, {args.seconds:g} s clips, "
        f"{args.clips} clips per row (ideal: {3600 / args.gen_seconds:.0f} clips/h per server)"
    )
    print(f"{'servers':>7}  {'concurrency':>11}  {'clips/h':>8}  {'speed-up':>8}  per server")
    base = None
    with tempfile.TemporaryDirectory(prefix="infiniloop-bench-") as tmp:
        for servers, concurrency in ((1, 1), (2, 1), (2, 2), (1, 2), (2, 4)):
            rate, made = measure(servers, concurrency, args, Path(tmp))
            base = base or rate
            print(
                f"{servers:>7}  {concurrency:>11}  {rate:>8.0f}  {rate / base:>7.2f}x  "
                + " ".join(str(n) for n in made)
            )


if __name__ == "__main__":
    main()
