"""The producer: keeps loops ready so that the player never waits.

While one loop plays, the producer generates the next clips (one at a time by
default), has the analyzer worker cut loops from them, stores them in the library
and queues them, until `generator.prefetch` loops of the current prompt are
ready. A prompt change cancels the running generation and drops the old prompt's
queued loops (unless kept). Failures are logged in one line, counted, and retried
with exponential backoff; after several in a row the producer serves loops from
the library instead and says so in its status.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infiniloopd.config import Config, GeneratorConfig
from infiniloopd.core.prompt import prompt_key
from infiniloopd.errors import UserError
from infiniloopd.generators import Generator, make_generator
from infiniloopd.generators.synth.facts import music_path, read_music
from infiniloopd.library import Library, LoopEntry
from infiniloopd.paths import ensure_dir
from infiniloopd.worker import AnalyzerWorker

log = logging.getLogger(__name__)

Emit = Callable[[str, dict], None]

BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
FALLBACK_AFTER = 3
# How many recently played loops the library fallback avoids repeating.
RECENT = 8
PROGRESS_EVERY = 0.5  # seconds between generation_progress events


@dataclass
class _Ready:
    entry: LoopEntry
    audio: np.ndarray


@dataclass
class _Job:
    prompt: str
    generator: Generator
    task: asyncio.Task[None] | None = None
    progress: float | None = None
    phase: str = "starting"
    last_emit: float = 0.0


class Producer:
    """Keeps `generator.prefetch` loops of the current prompt ready."""

    def __init__(
        self,
        cfg: Config,
        library: Library,
        worker: AnalyzerWorker,
        emit: Emit,
        *,
        prompt: str,
        spool: Path,
        generator_factory: Callable[[GeneratorConfig], Generator] | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        fallback_after: int = FALLBACK_AFTER,
        seed: int | None = None,
    ) -> None:
        self._cfg = cfg
        self._gen_cfg = cfg.generator
        self._library = library
        self._worker = worker
        self._emit = emit
        self._prompt = prompt
        self._spool = spool
        self._factory = generator_factory or make_generator
        self._generator: Generator | None = None
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._fallback_after = fallback_after
        # A seed makes the clips reproducible (`infiniloopd record --seed`).
        self._rng = random.Random(seed) if seed is not None else None
        self._queue: list[_Ready] = []
        self._jobs: list[_Job] = []
        self._wake = asyncio.Event()
        self._failures = 0
        self._consecutive = 0
        self._last_error: str | None = None
        self._retry_at = 0.0  # time.monotonic() before which no new generation starts
        self._fallback = False
        # In fallback, the next library loop is loaded ahead in a thread, so that
        # take_ready() never decodes a file on the event loop.
        self._fallback_next: tuple[LoopEntry, np.ndarray] | None = None
        self._fallback_task: asyncio.Task[None] | None = None
        self._stats: dict[str, dict[str, float]] = {}
        self._recent: collections.deque[str] = collections.deque(maxlen=RECENT)
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the long-running task ---------------------------------------------------------

    async def run(self) -> None:
        """Keep the queue full until cancelled."""
        self._loop = asyncio.get_running_loop()
        ensure_dir(self._spool)
        for leftover in self._spool.glob("clip-*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        try:
            while True:
                self._wake.clear()
                now = time.monotonic()
                if now >= self._retry_at:
                    while self._need_more():
                        if not self._start_job():
                            break
                if (
                    self._fallback
                    and self._fallback_next is None
                    and (self._fallback_task is None or self._fallback_task.done())
                ):
                    self._fallback_task = asyncio.create_task(self._load_fallback())
                wait = self._retry_at - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait if wait > 0 else None)
        finally:
            jobs = [j.task for j in self._jobs if j.task is not None]
            if self._fallback_task is not None:
                jobs.append(self._fallback_task)
            for task in jobs:
                task.cancel()
            if jobs:
                await asyncio.gather(*jobs, return_exceptions=True)

    def _ready_for_prompt(self) -> int:
        key = prompt_key(self._prompt)
        return sum(1 for r in self._queue if prompt_key(r.entry.prompt) == key)

    def _need_more(self) -> bool:
        if len(self._jobs) >= self._gen_cfg.concurrency:
            return False
        live = sum(1 for j in self._jobs if j.prompt == self._prompt)
        return self._ready_for_prompt() + live < self._gen_cfg.prefetch

    def _start_job(self) -> bool:
        if self._generator is None:
            try:
                self._generator = self._factory(self._gen_cfg)
            except UserError as exc:
                self._failed(str(exc))
                return False
        job = _Job(prompt=self._prompt, generator=self._generator)
        job.task = asyncio.create_task(self._produce(job), name="infiniloop-generate")
        self._jobs.append(job)
        return True

    async def _produce(self, job: _Job) -> None:
        gen = job.generator
        seconds = self._gen_cfg.seconds
        seed = self._rng.randrange(2**31) if self._rng is not None else secrets.randbelow(2**31)
        out = self._spool / f"clip-{secrets.token_hex(6)}.wav"
        written: Path | None = None
        self._emit(
            "generation_started", {"prompt": job.prompt, "generator": gen.name, "model": gen.model}
        )
        log.info("generating %g s with %s/%s for %r", seconds, gen.name, gen.model, job.prompt)

        def progress(fraction: float) -> None:
            job.progress = max(0.0, min(1.0, float(fraction)))
            phase = getattr(gen, "phase", None)
            phase = phase if isinstance(phase, str) and phase != "idle" else "generating"
            now = time.monotonic()
            if phase != job.phase or now - job.last_emit >= PROGRESS_EVERY:
                job.phase = phase
                job.last_emit = now
                self._emit("generation_progress", {"fraction": job.progress, "phase": phase})

        started = time.monotonic()
        try:
            # The backends time out on their own; this is the net under the net.
            written = await asyncio.wait_for(
                gen.generate(job.prompt, seconds, out, progress, seed=seed),
                self._gen_cfg.timeout + 30,
            )
            gen_seconds = time.monotonic() - started
            job.phase, job.progress = "analysing", None
            audio, info = await self._worker.analyse(written)
            job.phase = "storing"
            meta = {
                "prompt": job.prompt,
                "generator": gen.name,
                "model": gen.model,
                "bpm": info.get("bpm"),
                "start": info.get("start", 0),
                "end": info.get("end", len(audio)),
                "loudness_lufs": info.get("loudness_lufs"),
                "score": info.get("score"),
                "source_seconds": info.get("source_seconds", seconds),
                "grid": info.get("grid"),
                "music": read_music(written),  # what the synth composed, if it says
            }
            loop = asyncio.get_running_loop()
            # FLAC encoding takes a moment; keep it off the event loop.
            entry = await loop.run_in_executor(
                None, self._library.add, audio, self._worker.rate, meta
            )
        except asyncio.CancelledError:
            log.info("generation for %r cancelled", job.prompt)
            raise
        except TimeoutError:
            self._failed(f"{gen.name}: no result after {self._gen_cfg.timeout + 30:g} s")
        except UserError as exc:
            self._failed(str(exc))
        except Exception as exc:  # a bug: keep producing, but leave a traceback
            log.exception("producer: unexpected error")
            self._failed(f"internal error: {type(exc).__name__}: {exc}")
        else:
            self._succeeded(job, gen, entry, audio, gen_seconds, info)
        finally:
            for path in {out, written, music_path(out)}:
                if path is not None:
                    with contextlib.suppress(OSError):
                        path.unlink()
            with contextlib.suppress(ValueError):
                self._jobs.remove(job)
            self._wake.set()

    def _succeeded(
        self,
        job: _Job,
        gen: Generator,
        entry: LoopEntry,
        audio: np.ndarray,
        gen_seconds: float,
        info: dict[str, Any],
    ) -> None:
        if self._fallback:
            log.info("generator works again; leaving library fallback")
        self._consecutive = 0
        self._fallback = False
        self._fallback_next = None
        self._retry_at = 0.0
        clip_seconds = float(info.get("source_seconds") or self._gen_cfg.seconds)
        self._record(f"{gen.name}/{gen.model}", gen_seconds, clip_seconds)
        self._emit("generation_finished", {"id": entry.id, "seconds": gen_seconds})
        if prompt_key(job.prompt) != prompt_key(self._prompt):
            return  # the prompt changed while storing: it stays in the library only
        self._queue.append(_Ready(entry, audio))
        log.info(
            "loop %s ready: %.1f s, %s BPM (generated in %.1f s)",
            entry.id,
            entry.seconds,
            f"{entry.bpm:.0f}" if entry.bpm else "?",
            gen_seconds,
        )
        self._emit(
            "loop_ready",
            {"id": entry.id, "prompt": entry.prompt, "bpm": entry.bpm, "seconds": entry.seconds},
        )

    def _failed(self, message: str) -> None:
        message = " ".join(message.split())
        self._failures += 1
        self._consecutive += 1
        self._last_error = message
        delay = min(self._backoff_max, self._backoff_base * 2 ** (self._consecutive - 1))
        self._retry_at = time.monotonic() + delay
        if self._consecutive >= self._fallback_after and not self._fallback:
            self._fallback = True
            log.warning(
                "generation failed %d times in a row; playing from the library meanwhile",
                self._consecutive,
            )
        log.warning("generation failed (retry in %g s): %s", delay, message)
        self._emit("generation_failed", {"error": message, "retry_in": delay})

    def _record(self, model: str, gen_seconds: float, clip_seconds: float) -> None:
        st = self._stats.setdefault(
            model, {"clips": 0, "mean_seconds": 0.0, "realtime_factor": 0.0}
        )
        st["clips"] = int(st["clips"]) + 1
        n = st["clips"]
        st["mean_seconds"] += (gen_seconds - st["mean_seconds"]) / n
        rtf = gen_seconds / max(clip_seconds, 1e-3)
        st["realtime_factor"] += (rtf - st["realtime_factor"]) / n

    # --- what the daemon calls ---------------------------------------------------------

    @property
    def prompt(self) -> str:
        return self._prompt

    def set_prompt(self, prompt: str, *, keep: bool = False) -> None:
        """Switch to a new prompt: cancel the running generation, drop old loops unless kept."""
        if prompt == self._prompt:
            return
        self._prompt = prompt
        key = prompt_key(prompt)
        for job in self._jobs:
            if prompt_key(job.prompt) != key and job.task is not None:
                job.task.cancel()
        if not keep:
            dropped = [r for r in self._queue if prompt_key(r.entry.prompt) != key]
            self._queue = [r for r in self._queue if prompt_key(r.entry.prompt) == key]
            if dropped:
                log.info("dropped %d ready loops of the previous prompt", len(dropped))
        # A new prompt is worth trying at once even while backing off.
        self._retry_at = 0.0
        self._wake.set()

    def update_generator(self, cfg: GeneratorConfig) -> None:
        """Use this generator config from the next clip on."""
        self._gen_cfg = cfg
        # Made now (it is cheap) so status names what it uses before its first clip; one
        # that cannot be made is tried again, and its error reported, when a clip starts.
        try:
            self._generator = self._factory(cfg)
        except UserError:
            self._generator = None
        self._consecutive = 0
        self._retry_at = 0.0
        self._wake.set()

    def _poke(self) -> None:
        """Wake run(); safe from a worker thread (the daemon loads first_loop in one)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None or self._loop is None:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _note_played(self, entry: LoopEntry) -> None:
        self._recent.append(entry.id)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None:
            self._library.touch(entry)  # already off the loop (first_loop in a thread)
        else:
            # Marking a loop played writes and syncs its sidecar: not on the event loop.
            running.run_in_executor(None, self._library.touch, entry)
        self._poke()

    async def _load_fallback(self) -> None:
        found = await asyncio.to_thread(self._pick_and_load, set(self._recent))
        if self._fallback:
            self._fallback_next = found
            if found is not None:
                self._wake.set()

    def take_ready(self) -> tuple[LoopEntry, np.ndarray] | None:
        """The next loop to play (its audio in memory), or None to keep the current one."""
        if self._queue:
            key = prompt_key(self._prompt)
            index = next(
                (i for i, r in enumerate(self._queue) if prompt_key(r.entry.prompt) == key), 0
            )
            ready = self._queue.pop(index)
            self._note_played(ready.entry)
            return ready.entry, ready.audio
        if self._fallback and self._fallback_next is not None:
            ready, self._fallback_next = self._fallback_next, None
            self._note_played(ready[0])
            return ready
        return None

    def _pick_and_load(self, exclude: set[str]) -> tuple[LoopEntry, np.ndarray] | None:
        """A library loop for the current prompt (or any), decoded; blocking I/O."""
        tried = set(exclude)
        for _ in range(3):
            entry = self._library.pick(self._prompt, tried)
            if entry is None:
                return None
            try:
                audio = self._library.load(entry)
            except UserError as exc:
                log.warning("%s", exc)
                tried.add(entry.id)
                continue
            return entry, audio
        return None

    def first_loop(self) -> tuple[LoopEntry, np.ndarray] | None:
        """A loop from the library to play at once at start, preferring the current prompt."""
        found = self._pick_and_load(exclude=set())
        if found is not None:
            self._note_played(found[0])
        return found

    def ready(self) -> list[LoopEntry]:
        return [r.entry for r in self._queue]

    def should_switch(self, played: float, min_play: float) -> bool:
        """True when the current loop has played long enough and another one is ready."""
        if played < min_play:
            return False
        if self._queue:
            return True
        return self._fallback and self._fallback_next is not None

    def status(self) -> dict:
        job = self._jobs[0] if self._jobs else None
        now = time.monotonic()
        if job is not None:
            phase = job.phase
        elif self._retry_at > now:
            phase = "waiting to retry"
        else:
            phase = "idle"
        return {
            "generating": job is not None,
            "progress": job.progress if job is not None else None,
            "phase": phase,
            "prompt": self._prompt,
            "queue": len(self._queue),
            "failures": self._failures,
            "consecutive_failures": self._consecutive,
            "last_error": self._last_error,
            "fallback": self._fallback,
            "retry_in": max(0.0, self._retry_at - now) if self._retry_at > now else None,
            "generator": self._gen_cfg.backend,
            # What the generator really uses (MusicGPT model, synth SoundFont, command's
            # program); None until it is made: at the first clip, or on a config change.
            "uses": self._generator.model if self._generator is not None else None,
            # Backends that spread work over servers (musicgpt-server) list each one.
            "servers": getattr(self._generator, "servers", None),
            "stats": self.stats,
        }

    @property
    def stats(self) -> dict[str, dict[str, float]]:
        """Per model ("backend/model"): clips, mean_seconds, realtime_factor (wall / audio)."""
        return {k: dict(v) for k, v in self._stats.items()}

    @stats.setter
    def stats(self, value: dict[str, Any]) -> None:
        """Restore statistics saved in the state file; ignores malformed parts."""
        restored: dict[str, dict[str, float]] = {}
        if isinstance(value, dict):
            for model, st in value.items():
                try:
                    clips = int(st["clips"])
                    mean = float(st["mean_seconds"])
                    rtf = float(st["realtime_factor"])
                except (TypeError, KeyError, ValueError):
                    continue
                if clips > 0 and mean >= 0 and rtf >= 0:
                    restored[str(model)] = {
                        "clips": clips,
                        "mean_seconds": mean,
                        "realtime_factor": rtf,
                    }
        self._stats = restored
