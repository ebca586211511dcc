"""The daemon's `synth` backend: the composer run as a low-priority child process.

`SynthGenerator` renders in-process (for tests, benchmarks and `infiniloopd generate`);
the daemon instead runs `python -m infiniloopd.generators.synth` per clip, so the
SoundFont and scipy stay out of its memory and the render never holds the GIL the
audio thread needs. The child costs about half a second of start-up per clip, which is
small beside the clip's minute or more of playing time.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from infiniloopd.config import GeneratorConfig
from infiniloopd.errors import UserError
from infiniloopd.generators.base import (
    LowPriority,
    ProgressFn,
    check_clip,
    check_exit,
    run_process,
)
from infiniloopd.text import printable

from .constants import DEFAULT_SOUNDFONTS, INSTALL_HINT

log = logging.getLogger(__name__)

# Lines of a clip's output kept to be logged (the child's own warnings, e.g. a fallback).
MAX_WARNINGS = 20


class SynthProcessGenerator:
    """Makes each clip with the built-in composer in a child process."""

    name = "synth"

    def __init__(self, cfg: GeneratorConfig, *, search: tuple[Path, ...] = DEFAULT_SOUNDFONTS):
        self.cfg = cfg
        if cfg.soundfont is not None:
            if not cfg.soundfont.is_file():
                raise UserError(f"generator.soundfont: no such file: {cfg.soundfont}")
            self.soundfont: Path | None = cfg.soundfont
        else:
            self.soundfont = next((p for p in search if p.is_file()), None)
            if self.soundfont is None:
                # Said once, here, rather than by every child.
                log.warning(
                    "synth: no General MIDI SoundFont found (looked for %s); using the plain "
                    "numpy synthesizer; for real instruments: %s",
                    ", ".join(str(p) for p in search),
                    INSTALL_HINT,
                )
        self.model = self.soundfont.stem if self.soundfont is not None else "numpy"
        self.phase = "idle"
        self._priority = LowPriority(cfg.nice, cfg.idle_priority)
        self._warned: set[str] = set()
        self._clips: dict[str, int] = {}  # clips made per prompt: where each piece is

    def command(
        self, prompt: str, seconds: float, out: Path, seed: int, clip: int | None = None
    ) -> list[str]:
        argv = [sys.executable, "-m", "infiniloopd.generators.synth"]
        argv += ["--prompt", prompt, "--seconds", f"{seconds:g}", "--seed", str(seed)]
        if clip is not None:
            argv += ["--clip", str(clip)]
        argv += ["--out", str(out)]
        if self.soundfont is not None:
            argv += ["--soundfont", str(self.soundfont)]
        return argv

    async def generate(
        self, prompt: str, seconds: float, out: Path, progress: ProgressFn, *, seed: int
    ) -> Path:
        who = "generator synth"
        lines: list[str] = []
        pending = [""]

        def on_output(text: str) -> None:
            pending[0] += text
            *complete, pending[0] = pending[0].split("\n")
            pending[0] = pending[0][-4096:]  # a line without end is not kept whole
            for line in complete:
                if line.startswith("progress "):
                    with contextlib.suppress(IndexError, ValueError):
                        progress(min(1.0, max(0.0, float(line.split()[1]))))
                elif line.strip() and len(lines) < MAX_WARNINGS:
                    lines.append(printable(line.strip()[:500]))

        # Clips of one prompt walk through one piece: 0, 1, 2, ... per prompt (by its
        # words, as the composer reads it).
        key = " ".join(prompt.lower().split())
        clip = self._clips[key] = self._clips.get(key, -1) + 1
        self.phase = "generating"
        try:
            result = await run_process(
                self.command(prompt, seconds, out, seed, clip),
                timeout=self.cfg.timeout,
                who=who,
                on_output=on_output,
                priority=self._priority,
            )
        finally:
            self.phase = "idle"
        check_exit(result, who)
        for line in lines:
            # A FluidSynth fallback warning would repeat for every clip: log it once.
            if line not in self._warned:
                self._warned.add(line)
                log.warning("synth: %s", line)
        await check_clip(out, seconds, who)  # off the event loop
        progress(1.0)
        return out
