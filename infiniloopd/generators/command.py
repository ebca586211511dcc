"""The `command` backend: any external generator through an argument template.

The template is a list of strings from the config, e.g.
``["my-gen", "{prompt}", "{seconds}", "{output}"]``; the placeholders {prompt},
{seconds}, {output}, {seed} and {model} are substituted inside each argument and
the result is run directly, never through a shell, so a prompt cannot inject
commands. The program must write a WAV (or any format libsndfile reads) at {output}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from infiniloopd.config import GeneratorConfig
from infiniloopd.generators.base import (
    GeneratorError,
    LowPriority,
    ProgressFn,
    check_clip,
    check_exit,
    run_process,
)

log = logging.getLogger(__name__)

PLACEHOLDERS = ("prompt", "seconds", "output", "seed", "model")


def expand(template: list[str], values: dict[str, str]) -> list[str]:
    """Substitute {name} placeholders in each argument; other braces are left alone."""
    out = []
    for arg in template:
        for key in PLACEHOLDERS:
            arg = arg.replace("{" + key + "}", values[key])
        out.append(arg)
    return out


class CommandGenerator:
    """Runs a user-configured program to make each clip."""

    name = "command"

    def __init__(self, cfg: GeneratorConfig) -> None:
        if not cfg.command:
            raise GeneratorError(
                "generator.command: expected a command list, e.g. "
                '["my-gen", "{prompt}", "{seconds}", "{output}"], got none'
            )
        if not any("{output}" in arg for arg in cfg.command):
            raise GeneratorError(
                "generator.command: the template must contain {output}, where the program "
                "writes the clip"
            )
        self.cfg = cfg
        self.template = list(cfg.command)
        self.model = Path(self.template[0]).name
        self.phase = "idle"
        self._last_wall: float | None = None
        self._priority = LowPriority(cfg.nice, cfg.idle_priority)

    def command(self, prompt: str, seconds: float, out: Path, seed: int) -> list[str]:
        values = {
            "prompt": prompt,
            "seconds": f"{seconds:g}",
            "output": str(out),
            "seed": str(seed),
            "model": self.cfg.model,
        }
        return expand(self.template, values)

    async def generate(
        self, prompt: str, seconds: float, out: Path, progress: ProgressFn, *, seed: int
    ) -> Path:
        argv = self.command(prompt, seconds, out, seed)
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        who = f"generator.command ({self.model})"
        started = time.monotonic()

        async def estimate() -> None:
            # The program tells us nothing; a previous run's duration is the best guess.
            while True:
                await asyncio.sleep(0.5)
                expected = self._last_wall or max(seconds, 1.0)
                progress(min(0.95, (time.monotonic() - started) / expected))

        self.phase = "generating"
        ticker = asyncio.create_task(estimate())
        try:
            result = await run_process(
                argv, timeout=self.cfg.timeout, who=who, priority=self._priority
            )
        finally:
            ticker.cancel()
            self.phase = "idle"
        check_exit(result, who)
        await check_clip(out, seconds, who)  # off the event loop
        self._last_wall = result.seconds
        progress(1.0)
        return out
