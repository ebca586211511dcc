"""`infiniloopd loop`: find and export seamless loops from audio files, offline.

    infiniloopd loop IN.wav OUT.wav [--min-length S] [--max-length S] [--lufs X] [--json]
    infiniloopd loop --out-dir DIR IN1.wav IN2.wav ...

OUT is the rendered loop (the exact audio that repeats, seam crossfade baked in) at the
input's rate and channel count, level unchanged unless --lufs is given. A bad input gets
one line on stderr naming the file and the reason; a batch goes on with the others, and
the exit status is 1 if any input failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import soundfile as sf

from infiniloopd.analysis import AnalysisError, find_loop, normalize_loudness, render_loop
from infiniloopd.atomic import write_audio_atomic
from infiniloopd.audiofile import read_audio
from infiniloopd.errors import UserError

log = logging.getLogger(__name__)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds greater than 0, got {text!r}")
    return v


def _lufs(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LUFS (e.g. -18), got {text!r}") from None
    if not -70.0 <= v <= 0.0:
        raise argparse.ArgumentTypeError(f"expected LUFS between -70 and 0, got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `loop` subcommand's arguments."""
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="FILE", help="IN OUT, or inputs with --out-dir"
    )
    parser.add_argument(
        "--out-dir", type=Path, help="write each input's loop here as NAME-loop.wav"
    )
    parser.add_argument(
        "--min-length", type=_seconds, default=3.0, metavar="S", help="shortest loop (3 s)"
    )
    parser.add_argument(
        "--max-length", type=_seconds, default=None, metavar="S", help="longest loop"
    )
    parser.add_argument(
        "--lufs", type=_lufs, default=None, metavar="X", help="normalize the loop to X LUFS"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per input")


def _jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    if args.out_dir is None:
        if len(args.paths) != 2:
            raise UserError(
                "loop: expected IN.wav OUT.wav, or --out-dir DIR followed by the inputs,"
                f" got {len(args.paths)} paths"
            )
        return [(args.paths[0], args.paths[1])]
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserError(f"{args.out_dir}: --out-dir: expected a directory")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jobs, used = [], set()
    for src in args.paths:
        dest = args.out_dir / f"{src.stem}-loop.wav"
        k = 2
        while dest in used:  # two inputs with one name from different folders
            dest = args.out_dir / f"{src.stem}-loop-{k}.wav"
            k += 1
        used.add(dest)
        jobs.append((src, dest))
    return jobs


def _write_atomic(dest: Path, audio, sr: int, subtype: str | None) -> None:
    """Write a WAV next to dest and rename it over dest, so a failure leaves no half file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if subtype is None or not sf.check_format("WAV", subtype):
        subtype = "FLOAT"
    write_audio_atomic(dest, audio, sr, format="WAV", subtype=subtype)


def loop_file(
    src: Path,
    dest: Path,
    *,
    min_seconds: float,
    max_seconds: float | None,
    lufs: float | None,
) -> dict:
    """Find, render and write the loop of one file; returns the JSON record for it."""
    y, sr = read_audio(src)
    info = sf.info(str(src))
    try:
        points = find_loop(y, sr, min_seconds=min_seconds, max_seconds=max_seconds)
        loop = render_loop(y, sr, points)
        subtype = info.subtype
        if lufs is not None:
            loop, _ = normalize_loudness(loop, sr, target_lufs=lufs)
            # a new level is new sample values: keep full precision
            subtype = "FLOAT"
    except AnalysisError as e:
        raise UserError(f"{src}: {e}") from None
    try:
        _write_atomic(dest, loop, sr, subtype)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise UserError(f"{dest}: cannot write: {e}") from None
    return {
        "input": str(src),
        "output": str(dest),
        "start": points.start,
        "end": points.end,
        "rate": sr,
        "seconds": round(points.seconds, 6),
        "bpm": round(points.bpm, 3),
        "score": round(points.score, 6),
    }


def main(args: argparse.Namespace) -> int:
    """Run `infiniloopd loop`; 0 if every input gave a loop, else 1."""
    if args.max_length is not None and args.max_length < args.min_length:
        raise UserError(
            f"loop: --max-length {args.max_length:g} is shorter than --min-length"
            f" {args.min_length:g}"
        )
    failed = 0
    for src, dest in _jobs(args):
        try:
            rec = loop_file(
                src,
                dest,
                min_seconds=args.min_length,
                max_seconds=args.max_length,
                lufs=args.lufs,
            )
        except UserError as e:
            failed += 1
            print(f"infiniloopd loop: {e}", file=sys.stderr, flush=True)
            continue
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            print(
                f"{src} -> {dest}: {rec['seconds']:.2f} s loop from"
                f" {rec['start'] / rec['rate']:.2f} s, {rec['bpm']:.1f} BPM",
                flush=True,
            )
    return 1 if failed else 0
