"""Render one synth clip in a process of its own: `python -m infiniloopd.generators.synth`.

The daemon runs the composer this way, like any external generator, so that scipy,
FluidSynth and a 150 MB SoundFont never live in the daemon's process, the render never
competes with the audio thread for the interpreter, and the clip is made at low CPU
priority with the same timeout and cancellation as MusicGPT.

Progress goes to stdout as lines `progress FRACTION`; errors as one line on stderr with
exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from infiniloopd.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infiniloopd.generators.synth")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--soundfont", type=Path, help="omit for the numpy synthesizer")
    parser.add_argument("--clip", type=int, help="the clip's place in the prompt's piece")
    args = parser.parse_args(argv)
    # Without --soundfont the parent chose numpy and has said so once already.
    level = logging.WARNING if args.soundfont is not None else logging.ERROR
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)

    from infiniloopd.generators.synth.generator import (
        SynthGenerator,
        write_music,
        write_wav_atomic,
    )

    def report(fraction: float) -> None:
        print(f"progress {fraction:.3f}", flush=True)

    try:
        gen = SynthGenerator(args.soundfont, search=())
        audio = gen.render(args.prompt, args.seconds, args.seed, report=report, clip=args.clip)
        # The facts first: the parent takes the clip's appearance as the end of the work.
        write_music(args.out, gen.compose(args.prompt, args.seconds, args.seed, args.clip))
        write_wav_atomic(args.out, audio, gen.rate)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 1
    report(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
