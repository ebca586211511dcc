"""The MusicGPT backend: drives the `musicgpt` binary (MusicGen on ONNX Runtime).

The command line, as the binary defines it (gabotechs/MusicGPT, src/cli):
``musicgpt PROMPT --model M --secs N --output FILE --no-playback --no-interactive``
with ``--gpu``, ``--use-split-decoder`` and ``--force-download`` when configured.
``--secs`` is an integer from 1 to 30; the model names are clap's kebab-case values.
Models are downloaded on first use into its own data dir, which can take minutes.

Its progress bars (indicatif) are drawn only on a terminal, so it runs under a
pseudo-terminal and the bars are parsed: download bars ("12.5 MiB/300 MiB") and
the "Generating audio [####>---]" bar (tokens, 50 per second of audio). When no bar
shows up, progress is estimated from elapsed time and the measured speed of
earlier clips, so status never looks hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from infiniloopd.config import MUSICGPT_MODELS, GeneratorConfig
from infiniloopd.generators.base import (
    GeneratorError,
    LowPriority,
    ProgressFn,
    check_clip,
    check_exit,
    last_message,
    run_process,
    strip_ansi,
)

log = logging.getLogger(__name__)

BINARY_NAMES = ("musicgpt", "musicgpt-x86_64-unknown-linux-gnu")
MIN_SECS, MAX_SECS = 1, 30
# Seconds of wall time per second of audio before anything was measured here:
# MusicGen small on a few CPU cores.
DEFAULT_SPEED = 4.0

_GEN_BAR = re.compile(r"Generating audio.*?\[([#>\-]+)\]")
_DL_BAR = re.compile(r"\[([#>\-]+)\]\s+([\d.]+\s*[KMGT]?i?B)\s*/\s*([\d.]+\s*[KMGT]?i?B)")
_DL_NOTICE = re.compile(r"models? need to be downloaded|downloading", re.IGNORECASE)
_LOADING = re.compile(r"Loading\b")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_UNITS.update({"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4})


def _bytes(text: str) -> float:
    m = re.match(r"([\d.]+)\s*(\w+)", text)
    if not m:
        return 0.0
    try:
        return float(m.group(1)) * _UNITS.get(m.group(2), 1)
    except ValueError:
        return 0.0


def _bar_fraction(bar: str) -> float:
    # indicatif draws done cells as '#', the head as '>', the rest as '-'.
    return (bar.count("#") + 0.5 * bar.count(">")) / len(bar) if bar else 0.0


def find_binary(configured: Path | None) -> Path:
    """The musicgpt executable: `generator.binary`, else one of BINARY_NAMES on PATH."""
    if configured is not None:
        path = configured.expanduser()
        if not path.exists():
            raise GeneratorError(f"generator.binary: {path}: no such file")
        if path.is_dir() or not os.access(path, os.X_OK):
            raise GeneratorError(f"generator.binary: {path}: not an executable file")
        return path
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise GeneratorError(
        f"musicgpt: neither {BINARY_NAMES[0]!r} nor {BINARY_NAMES[1]!r} found on PATH; "
        "install MusicGPT (github.com/gabotechs/MusicGPT) or set generator.binary"
    )


def musicgpt_secs(seconds: float) -> int:
    """The integer --secs for a requested length, or GeneratorError if MusicGPT refuses it."""
    secs = round(seconds)
    if not MIN_SECS <= secs <= MAX_SECS:
        raise GeneratorError(
            f"musicgpt: seconds must be between {MIN_SECS} and {MAX_SECS}, got {seconds:g}"
        )
    return secs


class _ProgressParser:
    """Turns MusicGPT's terminal output into a phase and a fraction within that phase."""

    def __init__(self) -> None:
        self.phase = "starting"
        self.fraction: float | None = None
        self.saw_generation_bar = False
        self.download_ended_at: float | None = None
        self._pending = ""
        self._downloads: dict[str, tuple[float, float]] = {}

    def feed(self, text: str) -> bool:
        """Consume output; True when phase or fraction changed."""
        self._pending += strip_ansi(text)
        parts = re.split(r"[\r\n]", self._pending)
        # The last piece may be a bar still being drawn; parse it now and keep it.
        self._pending = parts[-1][-4096:]
        before = (self.phase, self.fraction)
        for part in parts:
            self._line(part)
        return (self.phase, self.fraction) != before

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        m = _GEN_BAR.search(line)
        if m:
            if self.phase == "downloading model":
                self.download_ended_at = time.monotonic()
            self.saw_generation_bar = True
            frac = _bar_fraction(m.group(1))
            # The bar starts with length 1 at position 0; a full bar means decoding.
            self.phase = "decoding" if frac >= 1.0 else "generating"
            self.fraction = min(frac, 1.0)
            return
        m = _DL_BAR.search(line)
        if m:
            self.phase = "downloading model"
            total = _bytes(m.group(3))
            key = m.group(3) if total else str(len(self._downloads))
            self._downloads[key] = (_bytes(m.group(2)), total)
            done = sum(d for d, _ in self._downloads.values())
            whole = sum(t for _, t in self._downloads.values())
            self.fraction = min(done / whole, 1.0) if whole else None
            return
        if _DL_NOTICE.search(line) and "downloaded correctly" not in line:
            self.phase = "downloading model"
            self.fraction = 0.0 if self.fraction is None else self.fraction
            return
        if self.phase == "downloading model" and (
            "downloaded correctly" in line or _LOADING.search(line)
        ):
            self.download_ended_at = time.monotonic()
            self.phase = "starting"
            self.fraction = None


class MusicGPTGenerator:
    """Generates clips with the MusicGPT binary."""

    name = "musicgpt"

    def __init__(self, cfg: GeneratorConfig) -> None:
        if cfg.model not in MUSICGPT_MODELS:
            raise GeneratorError(
                f"generator.model: expected one of {', '.join(MUSICGPT_MODELS)}, got {cfg.model!r}"
            )
        self.cfg = cfg
        self.model = cfg.model
        self.phase = "idle"
        # Measured wall seconds per second of audio; refined after every clip.
        self.speed = DEFAULT_SPEED
        self._priority = LowPriority(cfg.nice, cfg.idle_priority)

    def command(self, binary: Path, prompt: str, secs: int, out: Path) -> list[str]:
        """The exact argv for one clip."""
        opts = ["--model", self.model, "--secs", str(secs), "--output", str(out)]
        opts += ["--no-playback", "--no-interactive"]
        if self.cfg.gpu:
            opts.append("--gpu")
        if self.cfg.use_split_decoder:
            opts.append("--use-split-decoder")
        if self.cfg.force_download:
            opts.append("--force-download")
        if prompt.startswith("-"):
            # Otherwise clap would read the prompt as an option.
            return [str(binary), *opts, "--", prompt]
        return [str(binary), prompt, *opts]

    async def generate(
        self, prompt: str, seconds: float, out: Path, progress: ProgressFn, *, seed: int
    ) -> Path:
        # MusicGPT has no seed option: its sampling already differs on every run.
        del seed
        if not prompt.strip():
            raise GeneratorError("musicgpt: the prompt is empty")
        secs = musicgpt_secs(seconds)
        binary = find_binary(self.cfg.binary)
        # MusicGPT appends .wav when missing; name the file it will really write.
        if out.suffix != ".wav":
            out = out.with_name(out.name + ".wav")
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        argv = self.command(binary, prompt, secs, out)
        parser = _ProgressParser()
        started = time.monotonic()
        self.phase = "starting"

        def report() -> None:
            self.phase = parser.phase
            if parser.fraction is not None:
                progress(parser.fraction)

        def on_output(text: str) -> None:
            if parser.feed(text):
                report()

        async def estimate() -> None:
            # Without bars (not a tty, old binary), guess from time and measured speed.
            while True:
                await asyncio.sleep(0.5)
                if parser.saw_generation_bar or parser.phase == "downloading model":
                    continue
                since = parser.download_ended_at or started
                elapsed = time.monotonic() - since
                if elapsed < 1.0:
                    continue
                parser.phase = "generating"
                parser.fraction = min(0.95, elapsed / max(self.speed * secs, 1.0))
                report()

        env = dict(os.environ)
        env.setdefault("TERM", "xterm")
        ticker = asyncio.create_task(estimate())
        try:
            result = await run_process(
                argv,
                timeout=self.cfg.timeout,
                who=f"musicgpt ({self.model})",
                on_output=on_output,
                use_pty=True,
                priority=self._priority,
                env=env,
            )
        finally:
            ticker.cancel()
            self.phase = "idle"
        who = f"musicgpt ({self.model})"
        check_exit(result, who)
        if not out.exists():
            # Older releases log the error and still exit 0.
            raise GeneratorError(f"{who} wrote no file: {last_message(result.output)}")
        facts = await check_clip(out, float(secs), who)  # off the event loop
        wall = result.seconds
        if parser.download_ended_at is not None:
            wall = time.monotonic() - parser.download_ended_at
        # A smoothed speed: one odd clip should not swing the estimates.
        self.speed = 0.7 * self.speed + 0.3 * (wall / max(facts.seconds, 0.1))
        progress(1.0)
        log.debug("musicgpt: %s (%.1f s audio) in %.1f s", out.name, facts.seconds, wall)
        return out
