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
    """Runs producer, loop choice, hand-off and mixer into a sound file, unpaced."""

    def __init__(
        self, cfg: Config, prompt: str, *, seed: int | None, library_dir: Path | None
    ) -> None:
        self.cfg = cfg
        self.prompt = prompt
        self.seed = seed
        self.tmp = Path(tempfile.mkdtemp(prefix="infiniloop-record-"))
        self.library_dir = library_dir if library_dir is not None else self.tmp / "loops"
        self.events: list[dict[str, Any]] = []
        self.handed: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}  # frames of each loop as it came from the library

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def run(self, out: Path, minutes: float, *, progress: bool = False) -> dict[str, Any]:
        """Record `minutes` of audio into `out`; returns the timeline."""
        import soundfile as sf

        from infiniloopd.library import Library
        from infiniloopd.player.handoff import Handoff
        from infiniloopd.player.mixer import Mixer
        from infiniloopd.producer import Producer
        from infiniloopd.worker import AnalyzerWorker

        cfg = self.cfg
        rate, channels = cfg.output.rate, cfg.output.channels
        block = max(16, round(rate * cfg.output.block_ms / 1000.0))
        # Loops are loudness-normalized: the file gets them at full scale, not the volume.
        self.mixer = mixer = Mixer(rate, channels, block, volume=1.0)
        library = Library(self.library_dir, cfg.library.max_mb, rate=rate, channels=channels)
        await asyncio.to_thread(library.scan)
        a = cfg.analysis
        worker = AnalyzerWorker(
            rate=rate,
            channels=channels,
            target_lufs=a.target_lufs,
            peak_ceiling_db=a.peak_ceiling_db,
            min_loop=a.min_loop,
            max_loop=a.max_loop,
        )
        self.producer = producer = Producer(
            cfg,
            library,
            worker,
            lambda _name, _data: None,  # the producer logs what matters itself
            prompt=self.prompt,
            spool=self.tmp / "spool",
            seed=self.seed,
        )
        self.handoff = Handoff(self._play, rate, stretch=cfg.playback.align)
        warm = asyncio.create_task(worker.start(), name="analyzer-warm-up")
        producing = asyncio.create_task(producer.run(), name="producer")
        total = max(1, round(minutes * 60 * rate))
        fade_at = total - min(total, round(END_FADE * rate))
        tick = max(block, round(TICK * rate))
        buf = np.zeros((block, channels), dtype=np.float32)
        tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        started = time.monotonic()
        written = 0
        bar = _Progress(total / rate) if progress else None
        try:
            first = await asyncio.to_thread(producer.first_loop)
            if first is not None:
                self._hand(*first)
            with sf.SoundFile(
                tmp_out, "w", rate, channels, format=FORMATS[out.suffix.lower()], subtype="PCM_24"
            ) as f:
                while written < total:
                    if written < fade_at:  # no new loop once the closing fade-out began
                        await self._choose(producing)
                    end = min(total, written + tick)
                    while written < end:
                        if written == fade_at:
                            mixer.stop(END_FADE)
                        n = min(block, end - written)
                        if written < fade_at:  # blocks end exactly where the fade-out starts
                            n = min(n, fade_at - written)
                        mixer.render_into(buf[:n])
                        f.write(buf[:n])
                        written += n
                    self._drain()
                    if bar is not None:
                        bar.show(written / rate, time.monotonic() - started)
                    await asyncio.sleep(0)  # let the producer and the worker run
            os.replace(tmp_out, out)
        finally:
            if bar is not None:
                bar.done()
            tmp_out.unlink(missing_ok=True)
            producing.cancel()
            warm.cancel()
            await asyncio.gather(producing, warm, return_exceptions=True)
            try:
                await asyncio.wait_for(worker.close(), 5.0)
            except Exception as exc:  # best effort at exit
                log.warning("analyzer worker did not close cleanly: %s", exc)
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
            "render_seconds": round(elapsed, 3),
            "speed": round(written / rate / max(elapsed, 1e-6), 2),
            "events": self.events,
        }

    # --- the daemon's loop choice, in rendered time ------------------------------------

    async def _choose(self, producing: asyncio.Task) -> None:
        """What the daemon's switch tick does; waits where the daemon would have a loop."""
        producer, mixer = self.producer, self.mixer
        min_play = self.cfg.playback.min_play
        while True:
            await self.handoff.wait()
            if producing.done():
                producing.result()  # its error, if any
                raise UserError("record: the producer stopped")
            deck = mixer.target
            if mixer.pending is not None:
                return  # a transition is on its way to its bar line
            played = deck.played / mixer.rate if deck is not None else 0.0
            if deck is None or producer.should_switch(played, min_play):
                ready = producer.take_ready()
                if ready is not None:
                    self._hand(*ready)
                    continue  # the hand-off may be stretching
                if deck is not None:
                    return
            elif played < min_play:
                return
            # Time to switch (or nothing plays yet) but nothing is ready: wait for the
            # generator, unless it cannot deliver.
            status = producer.status()
            if status["consecutive_failures"] >= FAIL_AFTER:
                if deck is not None:
                    return  # the daemon keeps playing what it has; so does the record
                raise UserError(f"record: no loop to play: {status['last_error']}")
            if not status["generating"] and status["retry_in"] is None and deck is not None:
                return
            await asyncio.sleep(0.05)

    def _hand(self, entry: Any, audio: np.ndarray) -> None:
        self.entries[entry.id] = entry
        self.sizes[entry.id] = int(audio.shape[0])
        crossfade = self.cfg.playback.crossfade
        self.handoff.hand(
            entry.id, audio, crossfade, grid=getattr(entry, "grid", None), bpm=entry.bpm
        )

    def _play(self, key: str, audio: np.ndarray, crossfade: float, *, grid: Any, bpm: Any) -> None:
        """The hand-off's target: the mixer's bar-line transition."""
        from infiniloopd.player.transitions import grid_to_dict

        if self.cfg.playback.align:
            self.mixer.transition(key, audio, crossfade, grid=grid, bpm=bpm)
        else:  # the old behaviour: crossfade at once, from the loop's first sample
            self.mixer.play(key, audio, crossfade, grid=grid, bpm=bpm)
        deck = self.mixer.target
        self.handed[key] = {
            "bpm": bpm,
            "frames": int(audio.shape[0]),
            "grid": grid_to_dict(deck.grid) if deck is not None and deck.grid else grid,
            "stretched": int(audio.shape[0]) != self.sizes.get(key),
        }

    def _drain(self) -> None:
        mixer = self.mixer
        events, mixer.events = mixer.events, []
        for name, data in events:
            kind = TIMELINE_EVENTS.get(name)
            if kind is None or "at" not in data:
                continue
            event: dict[str, Any] = {"at": int(data["at"]), "type": kind}
            event.update({k: v for k, v in data.items() if k not in ("at", "key")})
            key = data.get("key")
            if kind == "loop" and key is not None:
                entry = self.entries.get(key)
                event["id"] = key
                if entry is not None:
                    event.update(prompt=entry.prompt, source_bpm=entry.bpm, seconds=entry.seconds)
                event.update(self.handed.get(key, {}))
            elif key is not None:
                event["id"] = key
            self.events.append(event)


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
