"""`infiniloopd generate`: one clip from a prompt, its loop found and written to a file.

    infiniloopd generate "PROMPT" OUT.wav [--generator NAME] [--model M] [--seconds N]
                                          [--config PATH]

The generator settings come from the config (or its defaults), overridden by the
options; the loop is rendered at the configured output rate and channel count and
normalized to the configured loudness, exactly as the daemon would play it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import secrets
import sys
import tempfile
import time
from pathlib import Path

from infiniloopd.config import (
    GENERATOR_BACKENDS,
    Config,
    describe,
    load_config,
    parse_config,
)
from infiniloopd.errors import UserError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `generate` subcommand's arguments."""
    parser.add_argument("prompt", help="what the music should be, e.g. 'rainy lofi piano'")
    parser.add_argument("out", type=Path, metavar="OUT.wav", help="where to write the loop")
    parser.add_argument(
        "--generator", choices=GENERATOR_BACKENDS, help="backend (default: from the config)"
    )
    parser.add_argument("--model", help="MusicGPT model, e.g. small or medium")
    parser.add_argument("--seconds", type=float, metavar="N", help="length of the clip")
    parser.add_argument("--config", type=Path, metavar="PATH", help="config file to use")


def effective_config(args: argparse.Namespace) -> Config:
    """The config with the command line's generator options applied and validated."""
    cfg = load_config(args.config)
    overrides = {}
    if args.generator is not None:
        overrides["backend"] = args.generator
    if args.model is not None:
        overrides["model"] = args.model
    if args.seconds is not None:
        overrides["seconds"] = args.seconds
    if not overrides:
        return cfg
    data = describe(cfg)
    data["generator"].update(overrides)
    # Re-validating through the schema gives options the same messages as config keys.
    where = "command line" if cfg.source == "<defaults>" else f"{cfg.source} + command line"
    return parse_config(data, where)


async def _generate(cfg: Config, prompt: str, clip: Path) -> tuple[Path, float, str]:
    from infiniloopd.generators import make_generator

    gen = make_generator(cfg.generator)
    tty = sys.stderr.isatty()
    shown = {"text": ""}

    def progress(fraction: float) -> None:
        if not tty:
            return
        phase = getattr(gen, "phase", "generating")
        phase = "generating" if phase in (None, "idle") else phase
        text = f"\r{phase} {100 * fraction:3.0f}%"
        if text != shown["text"]:
            shown["text"] = text
            sys.stderr.write(text)
            sys.stderr.flush()

    started = time.monotonic()
    try:
        path = await gen.generate(
            prompt, cfg.generator.seconds, clip, progress, seed=secrets.randbelow(2**31)
        )
    finally:
        if tty and shown["text"]:
            sys.stderr.write("\r\x1b[K")
    return path, time.monotonic() - started, f"{gen.name}/{gen.model}"


def _db(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "-inf"


def main(args: argparse.Namespace) -> int:
    import soundfile as sf

    from infiniloopd.analysis import AnalysisError, analyse_clip

    if not args.prompt.strip():
        raise UserError("generate: the prompt is empty")
    cfg = effective_config(args)
    out: Path = args.out
    if not out.parent.is_dir():
        raise UserError(f"{out}: directory {out.parent} does not exist")
    if not out.suffix:
        raise UserError(f"{out}: give the file an extension (.wav or .flac)")
    with tempfile.TemporaryDirectory(prefix="infiniloop-generate-") as tmp:
        clip, gen_seconds, who = asyncio.run(_generate(cfg, args.prompt, Path(tmp) / "clip.wav"))
        y, sr = sf.read(str(clip), dtype="float32", always_2d=False)
    a = cfg.analysis
    try:
        loop, points, info = analyse_clip(
            y,
            sr,
            out_rate=cfg.output.rate,
            out_channels=cfg.output.channels,
            target_lufs=a.target_lufs,
            peak_ceiling_db=a.peak_ceiling_db,
            min_seconds=a.min_loop,
            max_seconds=a.max_loop,
        )
    except AnalysisError as exc:
        raise UserError(f"generate: no loop in the {who} clip: {exc}") from None
    try:
        sf.write(str(out), loop, cfg.output.rate, subtype="PCM_24")
    except (sf.LibsndfileError, OSError, TypeError, ValueError) as exc:
        raise UserError(f"{out}: cannot write: {' '.join(str(exc).split())}") from None
    meter = f"{points.bars} bars of {points.beats_per_bar}" if points.beats_per_bar > 1 else ""
    beats = f"{points.beats} beats" + (f", {meter}" if meter else "")
    print(f"{out}: {points.seconds:.2f} s loop ({beats} at {points.bpm:.1f} BPM)")
    print(f"  prompt     {args.prompt}")
    print(f"  clip       {info['input_seconds']:.1f} s by {who}, generated in {gen_seconds:.1f} s")
    print(f"  loop       {info['start_s']:.2f} s .. {info['end_s']:.2f} s of the clip")
    print(f"  seam score {points.score:.2f}")
    print(
        f"  level      {_db(info['loudness_out'])} LUFS, peak {_db(info['peak_db'])} dBFS, "
        f"{cfg.output.rate} Hz, {cfg.output.channels} ch"
    )
    return 0
