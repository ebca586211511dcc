"""`infiniloopd record`: render what the daemon would play into a WAV or FLAC file.

The offline twin of the daemon: the same producer (generator, analyzer worker,
library), the same loop choice (`Producer.take_ready` / `should_switch`), the same
tempo-matched hand-off and the same mixer, with its bar-line transitions. Nothing
paces the output: blocks are rendered as fast as the generator keeps up, and
`playback.min_play` counts rendered audio, not wall time. Where the daemon would
switch loops but the next one is still being generated, the render waits for it,
so the file is what a daemon with a fast enough generator would play.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from infiniloopd.config import GENERATOR_BACKENDS, Config, ConfigError, load_config, parse_config
from infiniloopd.errors import UserError

log = logging.getLogger(__name__)

FORMATS = {".wav": "WAV", ".flac": "FLAC"}
TICK = 0.2  # seconds of audio between looks at the producer (the daemon's tick)
END_FADE = 0.5  # the record ends with a fade-out this long
FAIL_AFTER = 3  # consecutive generation failures with nothing to play: give up
# Mixer events that go into the timeline, under the timeline's name for them.
TIMELINE_EVENTS = {
    "loop_started": "loop",
    "transition_start": "transition_start",
    "transition_end": "transition_end",
    "jump": "jump",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "out", type=Path, metavar="OUT.flac", help="the file to write (.wav or .flac)"
    )
    parser.add_argument(
        "--minutes", type=float, required=True, metavar="M", help="length of the recording"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--prompt", metavar="P", help="the prompt (default: from the config)")
    which.add_argument("--preset", metavar="NAME", help="a mood preset (its prompt and generator)")
    parser.add_argument("--generator", choices=GENERATOR_BACKENDS, help="generator backend")
    parser.add_argument("--seed", type=int, metavar="N", help="seed for reproducible clips")
    parser.add_argument(
        "--timeline", type=Path, metavar="OUT.json", help="write the events with sample positions"
    )
    parser.add_argument(
        "--library", type=Path, metavar="DIR", help="loop library (default: a temporary one)"
    )
    parser.add_argument("--config", type=Path, metavar="PATH", help="config file")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"{out}: expected a .wav or .flac file name")
    if not out.parent.is_dir():
        raise UserError(f"{out}: the directory {out.parent} does not exist")
    if not 0 < args.minutes <= 24 * 60:
        raise UserError(f"--minutes: expected minutes above 0 and up to 1440, got {args.minutes:g}")
    if args.timeline is not None and args.timeline.suffix.lower() != ".json":
        raise UserError(f"--timeline: {args.timeline}: expected a .json file name")
    cfg, prompt = _config(args)
    rec = Recorder(cfg, prompt, seed=args.seed, library_dir=args.library)
    try:
        timeline = asyncio.run(rec.run(out, args.minutes, progress=sys.stderr.isatty()))
    finally:
        rec.cleanup()
    if args.timeline is not None:
        from infiniloopd.atomic import write_json_atomic

        write_json_atomic(args.timeline, timeline, mode=0o644)
    log.info(
        "wrote %.1f min to %s in %.1f s (%.1fx real time)",
        args.minutes,
        out,
        timeline["render_seconds"],
        timeline["speed"],
    )
    return 0


def _config(args: argparse.Namespace) -> tuple[Config, str]:
    """The config with the command line applied, and the prompt to record."""
    cfg = load_config(args.config)
    prompt = cfg.prompt
    overrides: dict[str, Any] = {}
    if args.preset is not None:
        from infiniloopd.presets import load_presets

        presets = load_presets()
        preset = presets.get(args.preset)
        if preset is None:
            names = ", ".join(sorted(presets))
            raise UserError(f"--preset: no preset {args.preset!r} (presets: {names})")
        prompt = preset.prompt
        overrides.update(preset.generator)
    if args.prompt is not None:
        prompt = " ".join(args.prompt.split())
        if not prompt:
            raise UserError("--prompt: expected a non-empty prompt")
    if args.generator is not None:
        overrides["backend"] = args.generator
    if overrides:
        try:
            parse_config({"generator": overrides}, "record")
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        cfg = dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, **overrides))
    return dataclasses.replace(cfg, prompt=prompt), prompt


class Recorder:
    """The daemon's Session (producer, loop choice, hand-off, variation) and Player,
    rendered into a sound file in rendered time instead of in real time."""

    def __init__(
        self, cfg: Config, prompt: str, *, seed: int | None, library_dir: Path | None
    ) -> None:
        # A schedule would change the prompt at wall-clock times: not in a recording.
        self.cfg = dataclasses.replace(cfg, schedule=[])
        self.prompt = prompt
        self.seed = seed
        self.tmp = Path(tempfile.mkdtemp(prefix="infiniloop-record-"))
        self.library_dir = library_dir if library_dir is not None else self.tmp / "loops"
        self.events: list[dict[str, Any]] = []
        self.handed: dict[str, dict[str, Any]] = {}  # what the hand-off gave the player
        self.session: Any = None

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def run(self, out: Path, minutes: float, *, progress: bool = False) -> dict[str, Any]:
        """Record `minutes` of audio into `out`; returns the timeline."""
        from infiniloopd.core.session import Session
        from infiniloopd.player.engine import Player
        from infiniloopd.state import State

        cfg = self.cfg
        rate, channels = cfg.output.rate, cfg.output.channels
        tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        sink = _SoundFile(tmp_out, FORMATS[out.suffix.lower()])
        # Loops are loudness-normalized: the file gets them at full scale, not the volume.
        self.player = player = Player(
            sink,
            rate=rate,
            channels=channels,
            block_ms=cfg.output.block_ms,
            volume=1.0,
            on_event=self._event,
        )
        session = self.session = Session(cfg, state=State(prompt=self.prompt), persist=False)
        session.variation_seed = self.seed
        library, worker, producer = await session.build_producer(
            self.library_dir, self.tmp / "spool", seed=self.seed
        )
        session.attach(
            output=sink, player=player, library=library, worker=worker, producer=producer
        )
        session.handoff.on_deliver = self._delivered
        total = max(1, round(minutes * 60 * rate))
        fade_at = total - min(total, round(END_FADE * rate))
        tick = max(player.block, round(TICK * rate))
        started = time.monotonic()
        written = 0
        closed = False
        bar = _Progress(total / rate) if progress else None
        try:
            await session.start(switcher=False)
            while written < total:
                if written < fade_at:  # no new loop once the closing fade-out began
                    await self._choose()
                elif written == fade_at:
                    player.stop(END_FADE)
                end = min(total, written + tick)
                if written < fade_at:  # the fade-out starts exactly at its frame
                    end = min(end, fade_at)
                player.render(end - written)
                written = end
                if bar is not None:
                    bar.show(written / rate, time.monotonic() - started)
                await asyncio.sleep(0)  # let the producer, the worker and the session run
            closed = True
            await session.close()  # closes the file, too
            os.replace(tmp_out, out)
        finally:
            if bar is not None:
                bar.done()
            if not closed:
                await session.close()
            tmp_out.unlink(missing_ok=True)
        elapsed = time.monotonic() - started
        self.events.sort(key=lambda e: e["at"])
        return {
            "rate": rate,
            "channels": channels,
            "frames": written,
            "prompt": self.prompt,
            "generator": cfg.generator.backend,
            "seed": self.seed,
            "min_play": cfg.playback.min_play,
            "crossfade": cfg.playback.crossfade,
            "variation": cfg.playback.variation,
            "render_seconds": round(elapsed, 3),
            "speed": round(written / rate / max(elapsed, 1e-6), 2),
            "events": self.events,
        }

    async def _choose(self) -> None:
        """The daemon's switch tick, in rendered time. Where the daemon would switch but
        the next loop is still being generated, wait for it (a record is what a daemon
        with a fast enough generator plays)."""
        session, producer = self.session, self.session.producer
        while True:
            await session.settled()
            session.switch_tick()
            await session.settled()
            st = self.player.status()
            if st.key is not None and st.played < session.settings.min_play:
                return  # the loop plays on
            if producer.ready():
                continue  # a loop came while we looked: the next tick takes it
            status = producer.status()
            if status["consecutive_failures"] >= FAIL_AFTER:
                if st.key is not None:
                    return  # the daemon keeps playing what it has; so does the record
                raise UserError(f"record: no loop to play: {status['last_error']}")
            idle = not status["generating"] and status["retry_in"] is None
            if idle and st.key is not None:
                return  # nothing more is coming: the loop plays on
            if not any(t.get_name() == "producer" and not t.done() for t in session.tasks):
                raise UserError("record: the producer stopped")
            await asyncio.sleep(0.05)

    def _delivered(self, key: str, audio: np.ndarray, grid: Any, bpm: Any, stretched: bool) -> None:
        from infiniloopd.player.transitions import grid_to_dict, make_grid

        frames = int(audio.shape[0])
        if grid is None:  # the grid the mixer plans with: from the tempo alone
            grid = grid_to_dict(make_grid(None, bpm, frames, self.player.rate))
        self.handed[key] = {"bpm": bpm, "frames": frames, "grid": grid, "stretched": stretched}

    def _event(self, name: str, data: dict[str, Any]) -> None:
        """The player's events (on this thread): into the timeline, then to the session."""
        kind = TIMELINE_EVENTS.get(name)
        if kind is not None and "at" in data:
            event: dict[str, Any] = {"at": int(data["at"]), "type": kind}
            event.update({k: v for k, v in data.items() if k not in ("at", "key")})
            key = data.get("key")
            if key is not None:
                event["id"] = key
            if kind == "loop" and key is not None:
                entry = self.session.entries_by_id.get(key)
                if entry is not None:
                    event.update(prompt=entry.prompt, source_bpm=entry.bpm, seconds=entry.seconds)
                event.update(self.handed.get(key, {}))
            self.events.append(event)
        self.session.player_event(name, data)


class _SoundFile:
    """The record's output: 24-bit WAV or FLAC through libsndfile, as fast as rendered."""

    name = "record"
    paced = False
    xruns = 0

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self._file: Any = None

    def open(self, rate: int, channels: int) -> None:
        import soundfile as sf

        self.close()
        self._file = sf.SoundFile(self.path, "w", rate, channels, format=self.fmt, subtype="PCM_24")

    def write(self, frames: np.ndarray) -> None:
        if self._file is None:
            raise RuntimeError("record output is not open")
        self._file.write(frames)

    def close(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()

    def describe(self) -> str:
        return f"record: {self.path} ({self.fmt})"


class _Progress:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self, total_seconds: float) -> None:
        self.total = total_seconds
        self.last = -1.0

    def show(self, done: float, elapsed: float) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        frac = min(1.0, done / self.total)
        width = 30
        fill = "#" * round(frac * width)
        speed = done / elapsed if elapsed > 0 else 0.0
        sys.stderr.write(
            f"\r[{fill:<{width}}] {frac * 100:5.1f}%  {_mmss(done)}/{_mmss(self.total)}"
            f"  {speed:5.1f}x real time "
        )
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
