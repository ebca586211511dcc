#!/usr/bin/env python3
"""Loop quality and speed: our engine against PyMusicLooper on the same real-music clips.

Each tool runs in its own subprocess (so its warm-up, imports plus first call, is
measured honestly) over every clip of the corpus (benchmarks/corpus.py builds it),
writing each loop region to a WAV file. Ours: find_loop + render_loop at the clip's
rate. PyMusicLooper (installed from PyPI into a private venv on first use, never into
the project's environment): default settings, its best pair exported as the loop
region. Every loop is then scored by ../shared/tools/seam_eval.py and one table is
printed: failures, median and p90 of each deciding metric, median loop length,
seconds per clip (warm, after one warm-up clip) and the warm-up.

Usage: python3 benchmarks/loops.py [--corpus DIR] [--limit N] [--tools ours,pml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEAM_EVAL = Path(os.environ.get("SEAM_EVAL") or REPO.parent / "shared" / "tools" / "seam_eval.py")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "infiniloop-bench"
VENV = CACHE / "venv"


def pml_python() -> str:
    """A python with pymusiclooper, in a venv of its own so its pins touch nothing else."""
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True
        )
    probe = subprocess.run([str(py), "-c", "import pymusiclooper"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "pymusiclooper"], check=True)
    return str(py)


# --- the workers: run in a subprocess, one JSON line per clip on stdout -------------------


def worker_ours(clips: list[Path], out: Path) -> None:
    t0 = time.perf_counter()
    import soundfile as sf

    from infiniloopd.analysis import AnalysisError, find_loop, render_loop

    imports = time.perf_counter() - t0
    for i, clip in enumerate(clips):
        y, sr = sf.read(clip, dtype="float32")
        rec = {"clip": str(clip), "tool": "ours"}
        t1 = time.perf_counter()
        try:
            p = find_loop(y, sr)
            loop = render_loop(y, sr, p)
            rec["seconds_taken"] = time.perf_counter() - t1
            dest = out / f"ours-{clip.stem}.wav"
            sf.write(dest, loop, sr, subtype="FLOAT")
            rec.update(loop=str(dest), start=p.start, end=p.end, bpm=p.bpm, score=p.score)
            # bars only when beats were found; the loop is scored before its rotation to
            # the downbeat (a circular shift), so the join seam_eval sees is the real seam
            rec.update(bars=getattr(p, "bars", None), beats_per_bar=p.beats_per_bar)
        except AnalysisError as e:
            rec.update(loop=None, error=str(e), seconds_taken=time.perf_counter() - t1)
        if i == 0:
            rec["warmup"] = imports + rec["seconds_taken"]
        print(json.dumps(rec), flush=True)


def worker_pml(clips: list[Path], out: Path) -> None:
    t0 = time.perf_counter()
    import soundfile as sf
    from pymusiclooper.core import MusicLooper

    imports = time.perf_counter() - t0
    for i, clip in enumerate(clips):
        rec = {"clip": str(clip), "tool": "pml"}
        ml = MusicLooper(str(clip))  # loading is not timed, as for ours
        t1 = time.perf_counter()
        try:
            pairs = ml.find_loop_pairs()
            best = pairs[0]
            audio = ml.mlaudio.audio
            region = audio[best.loop_start : best.loop_end]
            rec["seconds_taken"] = time.perf_counter() - t1
            dest = out / f"pml-{clip.stem}.wav"
            sf.write(dest, region, ml.mlaudio.rate, subtype="FLOAT")
            rec.update(loop=str(dest), start=int(best.loop_start), end=int(best.loop_end))
        except Exception as e:  # any failure of the peer counts as "no loop"
            rec.update(loop=None, error=f"{type(e).__name__}: {e}")
            rec["seconds_taken"] = time.perf_counter() - t1
        if i == 0:
            rec["warmup"] = imports + rec["seconds_taken"]
        print(json.dumps(rec), flush=True)


# --- the driver ---------------------------------------------------------------------------


def run_tool(tool: str, clips: list[Path], out: Path) -> list[dict]:
    py = pml_python() if tool == "pml" else sys.executable
    listing = out / f"{tool}-clips.txt"
    listing.write_text("\n".join(str(c) for c in clips))
    cmd = [py, __file__, "--worker", tool, "--clip-list", str(listing), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def evaluate(records: list[dict], out: Path) -> list[dict]:
    manifest = out / f"{records[0]['tool'] if records else 'none'}-manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    proc = subprocess.run(
        [sys.executable, str(SEAM_EVAL), "--manifest", str(manifest)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _stat(vals: list, q: float) -> str:
    v = np.array([x for x in vals if x is not None], dtype=float)
    return "-" if v.size == 0 else f"{np.percentile(v, q):.3f}"


def table(results: list[dict], tools: list[str]) -> str:
    cols = [
        "tool",
        "clips",
        "failed",
        "click med",
        "click p90",
        "dip_db min",
        "dip_db med",
        "ibi_exc med",
        "ibi_exc p90",
        "surpr med",
        "len med s",
        "1-bar",
        "s/clip warm",
        "s/30s clip",
        "warm-up s",
    ]
    rows = [cols]
    for tool in tools:
        rs = [r for r in results if r["tool"] == tool]
        ok = [r for r in rs if not r.get("failed")]
        warm = [r["seconds_taken"] for r in rs[1:] if r.get("seconds_taken") is not None]
        warm30 = [
            r["seconds_taken"]
            for r in rs[1:]
            if r.get("seconds_taken") is not None and r["clip"].endswith("-30s.wav")
        ]
        warmup = next((r["warmup"] for r in rs if "warmup" in r), None)
        dips = [r.get("dip_db") for r in ok]
        rows.append(
            [
                tool,
                str(len(rs)),
                str(len(rs) - len(ok)),
                _stat([r.get("click") for r in ok], 50),
                _stat([r.get("click") for r in ok], 90),
                _stat(dips, 0),
                _stat(dips, 50),
                _stat([r.get("ibi_excess") for r in ok], 50),
                _stat([r.get("ibi_excess") for r in ok], 90),
                _stat([r.get("surprise_pct") for r in ok], 50),
                _stat([r.get("length_s") for r in ok], 50),
                str(sum(1 for r in ok if r.get("bars") == 1 and r.get("beats_per_bar", 1) > 1)),
                _stat(warm, 50),
                _stat(warm30, 50),
                "-" if warmup is None else f"{warmup:.2f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", type=Path, default=CACHE / "corpus")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--tools", default="ours,pml")
    ap.add_argument("--out", type=Path, default=CACHE / "loops")
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="print the table from the results of earlier runs in --out",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--clip-list", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker:
        clips = [Path(p) for p in a.clip_list.read_text().splitlines() if p]
        {"ours": worker_ours, "pml": worker_pml}[a.worker](clips, a.out)
        return 0

    tools = [t for t in a.tools.split(",") if t]
    if a.table_only:
        results = []
        for tool in tools:
            path = a.out / f"{tool}-results.jsonl"
            results += [json.loads(line) for line in path.read_text().splitlines() if line]
        print(table(results, tools))
        return 0
    if not SEAM_EVAL.exists():
        print(f"seam_eval.py not found at {SEAM_EVAL}", file=sys.stderr)
        return 2
    clips = sorted(a.corpus.glob("*.wav"))
    if not clips:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import corpus

        clips = sorted(corpus.build(a.corpus))
    if a.limit:
        clips = clips[: a.limit]
    a.out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []
    for tool in tools:
        recs = run_tool(tool, clips, a.out)
        evaluated = evaluate(recs, a.out)
        (a.out / f"{tool}-results.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in evaluated)
        )
        results.extend(evaluated)
        failed = [r for r in evaluated if r.get("failed")]
        for r in failed:
            print(f"{tool}: {Path(r['clip']).name}: {r.get('error', 'failed')}", file=sys.stderr)
    print(table(results, tools))
    return 0


if __name__ == "__main__":
    sys.exit(main())
