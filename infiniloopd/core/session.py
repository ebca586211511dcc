"""The core Session: the playing state, the settings and their persistence.

One asyncio loop on the main thread owns all of it. Frontends (the control socket,
MPRIS, MPD, the schedule) call the typed methods below and listen to events; the
audio thread (in `player`) and the analyzer process (in `worker`) only exchange
messages with it. Methods raise `infiniloopd.core.errors` exceptions, never wire codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infiniloopd import __version__, paths
from infiniloopd.atomic import write_audio_atomic, write_json_atomic
from infiniloopd.config import Config, ConfigError, load_config, parse_config
from infiniloopd.core.errors import Exists, Failed, InvalidValue, NotFound, NotReady
from infiniloopd.core.listener import Listener
from infiniloopd.core.prompt import Prompt, prompt_key
from infiniloopd.core.sleep import SLEEP_MAX, fade_gain, fade_length
from infiniloopd.errors import UserError
from infiniloopd.outputs import output_states, set_output_metadata
from infiniloopd.state import HISTORY_MAX, State, load_state, save_state

log = logging.getLogger(__name__)

TICK = 0.2  # seconds between looks at the player and the producer
STATE_SAVE_DELAY = 1.0  # changes are batched into one state write
SLEEP_STEP = 0.25  # seconds between volume steps of the sleep fade
FADE_OUT = 0.3  # SIGTERM fade (the issue allows up to 0.5 s)
SAVE_EXTENSIONS = {".wav": "WAV", ".flac": "FLAC"}
COMMAND_FOR_KEY = {"model": "model", "seconds": "duration", "backend": "generator"}
# Ranges of the run-time settings (the config checks the same ones at load).
CROSSFADE_MAX = 60.0
MIN_PLAY_MAX = 86400.0

Notify = Callable[..., None]


@dataclasses.dataclass
class Settings:
    """What the user can change at run time, on top of the config."""

    prompt: str
    preset: str | None
    volume: int
    crossfade: float
    min_play: float
    paused: bool
    generator: dict[str, Any]  # overrides of config.generator keys (GENERATOR_KEYS)
    preset_keys: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True)
class NextResult:
    """What `next` did: switched now, or will as soon as a loop is ready (`pending`)."""

    pending: bool
    message: str = ""


class Session:
    """The daemon's state and every action on it; see the module docstring."""

    def __init__(
        self,
        cfg: Config,
        config_path: Path | None = None,
        *,
        state: State | None = None,
        notify: Notify | None = None,
        persist: bool = True,
    ) -> None:
        self.cfg = cfg
        self.persist = persist  # False: never write state.json (`infiniloopd record`)
        self.variation_seed: int | None = None  # seeds the jump draws (record --seed)
        self._varying: asyncio.Future | None = None  # a jump table being built
        self.config_path = config_path
        self._notify = notify or (lambda *lines: None)
        self.started = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task] = []
        self.mode = "playing"  # the user's intent: playing | paused | stopped
        self.current: tuple[Any, Any] | None = None  # (LoopEntry, audio)
        self.output: Any = None  # what the player writes to (one output, or a fan-out)
        self.player: Any = None
        self.library: Any = None
        self.worker: Any = None
        self.producer: Any = None
        self.loops_played = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_MAX)
        self.entries_by_id: dict[str, Any] = {}
        self.event_seq = 0  # events emitted so far
        self._listeners: list[Listener] = []
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_status = ""
        self._presets: dict[str, Any] | None = None
        self.prompt_pending = False  # a new prompt whose first loop is not playing yet
        self.skip_pending = False  # `next` asked for while no loop was ready
        self.scheduler: Any = None  # a core.schedule.Scheduler when the config has a schedule
        self._sleep_task: asyncio.Task | None = None
        self._sleep_deadline: float | None = None  # on the loop's monotonic clock
        self.state = load_state() if state is None else state
        self.history.extend(self.state.history)  # what played before the restart
        self.settings = self._settings_from(cfg, self.state)

    # --- parts ----------------------------------------------------------------------

    async def open(self) -> None:
        """Build and start the output, player, library, analyzer worker and producer."""
        from infiniloopd.outputs import build_output
        from infiniloopd.player.engine import Player

        self.loop = asyncio.get_running_loop()
        cfg = self.cfg
        self._check_schedule(cfg)  # before any sound: a bad entry is a config error
        await asyncio.to_thread(_sweep_leftovers, cfg)
        out = cfg.output
        output = await asyncio.to_thread(build_output, cfg)
        player = Player(
            output,
            rate=out.rate,
            channels=out.channels,
            block_ms=out.block_ms,
            volume=self.settings.volume / 100,
            on_event=self.player_event,
        )
        # A file that cannot be written is a config error; a sound server that is not
        # up yet is retried in the background so the daemon stays controllable.
        player.start(retry=out.backend not in ("file",))
        try:
            spool = paths.ensure_dir(paths.cache_dir() / "spool")
            library, worker, producer = await self.build_producer(cfg.library.dir, spool)
        except BaseException:
            player.close()
            raise
        self.attach(output=output, player=player, library=library, worker=worker, producer=producer)

    async def build_producer(
        self, library_dir: Path, spool: Path, *, seed: int | None = None
    ) -> tuple[Any, Any, Any]:
        """The library (scanned), the analyzer worker and the producer, from the config
        at the output's rate; `seed` makes the clips reproducible (`record --seed`)."""
        from infiniloopd.library import Library
        from infiniloopd.producer import Producer
        from infiniloopd.worker import AnalyzerWorker

        cfg, out, a = self.cfg, self.cfg.output, self.cfg.analysis
        library = Library(library_dir, cfg.library.max_mb, rate=out.rate, channels=out.channels)
        await asyncio.to_thread(library.scan)
        worker = AnalyzerWorker(
            rate=out.rate,
            channels=out.channels,
            target_lufs=a.target_lufs,
            peak_ceiling_db=a.peak_ceiling_db,
            min_loop=a.min_loop,
            max_loop=a.max_loop,
        )
        producer = Producer(
            self.effective_config(),
            library,
            worker,
            self.emit,
            prompt=self.settings.prompt,
            spool=spool,
            seed=seed,
        )
        return library, worker, producer

    def attach(self, *, output: Any, player: Any, library: Any, worker: Any, producer: Any) -> None:
        """Use these parts (open() builds them from the config; tests bring their own)."""
        from infiniloopd.player.handoff import Handoff

        self.loop = asyncio.get_running_loop()
        self.output, self.player, self.library = output, player, library
        self.worker, self.producer = worker, producer
        # Every loop reaches the player through the hand-off: tempo-matched, on a bar line.
        self.handoff = Handoff(self._play_loop, player.rate)
        if self.state.stats:
            self.producer.stats = self.state.stats

    async def start(self, *, switcher: bool = True) -> None:
        """Start playing (or stay paused as saved) and run the producer and the switcher.

        `switcher=False`: whoever renders the audio calls `switch_tick` itself, in
        rendered time (`infiniloopd record`).
        """
        self.mode = "paused" if self.settings.paused else "playing"
        await self._play_first()
        self.tasks.append(asyncio.create_task(self._run_producer(), name="producer"))
        if switcher:
            self.tasks.append(asyncio.create_task(self._switch_loop(), name="switcher"))
        if self.cfg.schedule:
            from infiniloopd.core.schedule import Scheduler

            self.scheduler = Scheduler(self, self.cfg.schedule)
            self.tasks.append(asyncio.create_task(self.scheduler.run(), name="schedule"))

    async def fade_and_save(self) -> None:
        """First step of stopping: fade out (bounded) and write the state."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        snapshot = self._state_snapshot()
        # Fade first (bounded, ≤ 0.5 s), then everything else in silence.
        await asyncio.to_thread(self.player.fade_out, FADE_OUT)
        self._write_state(snapshot)

    async def close(self) -> None:
        """Last step of stopping: end the tasks, the analyzer worker and the player."""
        if self._sleep_task is not None:
            self._sleep_task.cancel()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.worker is not None:
            try:
                await asyncio.wait_for(self.worker.close(), 5.0)
            except Exception as exc:  # best effort at exit
                log.warning("analyzer worker did not close cleanly: %s", exc)
        if self.player is not None:
            await asyncio.to_thread(self.player.close)

    # --- settings -------------------------------------------------------------------

    @staticmethod
    def _settings_from(cfg: Config, st: State) -> Settings:
        gen: dict[str, Any] = {}
        for key, value in st.generator.items():
            try:
                parse_config({"generator": {key: value}}, "state.json")
            except ConfigError as exc:
                log.warning("ignoring saved generator setting: %s", exc)
                continue
            gen[key] = value
        return Settings(
            prompt=st.prompt or cfg.prompt,
            preset=st.preset if st.prompt else None,
            volume=cfg.playback.volume if st.volume is None else st.volume,
            crossfade=cfg.playback.crossfade if st.crossfade is None else st.crossfade,
            min_play=cfg.playback.min_play if st.min_play is None else st.min_play,
            paused=st.paused,
            generator=gen,
        )

    def effective_config(self, cfg: Config | None = None) -> Config:
        """The config with the run-time settings applied (what the producer works from)."""
        cfg = cfg or self.cfg
        gen = dataclasses.replace(cfg.generator, **self.settings.generator)
        playback = dataclasses.replace(
            cfg.playback,
            crossfade=self.settings.crossfade,
            min_play=self.settings.min_play,
            volume=self.settings.volume,
        )
        return dataclasses.replace(
            cfg, prompt=self.settings.prompt, generator=gen, playback=playback
        )

    def schedule_save(self) -> None:
        """Write state.json soon; several quick changes make one write."""
        if not self.persist or self.loop is None or self._save_handle is not None:
            return
        self._save_handle = self.loop.call_later(STATE_SAVE_DELAY, self._save_soon)

    def _save_soon(self) -> None:
        self._save_handle = None
        snapshot = self._state_snapshot()
        task = asyncio.ensure_future(asyncio.to_thread(self._write_state, snapshot))
        self.tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task) -> None:
        with contextlib.suppress(ValueError):
            self.tasks.remove(task)

    def _state_snapshot(self) -> State:
        s = self.settings
        stats = self.state.stats
        with contextlib.suppress(Exception):
            stats = self.producer.status().get("stats") or stats
        return State(
            prompt=s.prompt,
            preset=s.preset,
            volume=s.volume,
            paused=self.mode != "playing",
            crossfade=s.crossfade,
            min_play=s.min_play,
            generator=dict(s.generator),
            stats=stats,
            history=list(self.history),
        )

    @staticmethod
    def _write_state(st: State) -> None:
        try:
            save_state(st)
        except (OSError, UserError) as exc:
            log.warning("cannot save state: %s", exc)

    # --- events ---------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener.on_event(name, data)` for every event from now on."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Announce an event to every listener (main thread)."""
        data = data or {}
        self.event_seq += 1
        for listener in list(self._listeners):
            try:
                listener.on_event(name, data)
            except Exception:
                log.exception("event listener %r failed on %s", listener, name)
        if name in ("loop_ready", "generation_finished", "generation_failed"):
            self._refresh_status()
        if name == "loop_ready" and self.current is None:
            # The very first loop: start it now rather than at the next switch tick.
            try:
                self.switch_tick()
            except Exception:
                log.exception("loop switching failed (will retry)")

    def player_event(self, name: str, data: dict[str, Any]) -> None:
        """The player's on_event: called on the audio thread; hops to the event loop."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_player_event, name, dict(data))

    def _on_player_event(self, name: str, data: dict[str, Any]) -> None:
        if name in ("loop_started", "crossfade_done"):
            entry = self.entries_by_id.get(data.get("key"))
            if entry is not None:
                data = {"id": entry.id, "prompt": entry.prompt, "bpm": entry.bpm}
                data["seconds"] = entry.seconds
        self.emit(name, data)
        if name == "output_error":
            self.emit("error", {"message": f"output: {data.get('message')}"})
        self._refresh_status()

    # --- background tasks -------------------------------------------------------------

    async def _warm_worker(self) -> None:
        try:
            await self.worker.start()
        except UserError as exc:  # the producer retries analyses; say it once here
            log.error("%s", exc)
            self.emit("error", {"message": str(exc)})

    async def _run_producer(self) -> None:
        # The first clip is generated while the analyzer warms up (its first request
        # simply waits for the warm-up): with an empty library that is the time to
        # the first sound.
        warm = asyncio.create_task(self._warm_worker(), name="analyzer-warm-up")
        try:
            await self.producer.run()
        except asyncio.CancelledError:
            raise
        except UserError as exc:
            log.error("%s", exc)
            self.emit("error", {"message": str(exc)})
        except Exception:
            log.exception("the producer stopped")
            self.emit("error", {"message": "the producer stopped (see the daemon log)"})
        finally:
            warm.cancel()

    # --- playing --------------------------------------------------------------------

    async def _play_first(self) -> None:
        try:
            first = await asyncio.to_thread(self.producer.first_loop)
        except Exception:
            log.exception("could not load a loop from the library")
            first = None
        if first is None:
            log.info("library empty: playing as soon as the first loop is generated")
            return
        self._start_loop(*first, crossfade=0.0, audible=self.mode == "playing")

    def _start_loop(self, entry: Any, audio: Any, *, crossfade: float, audible: bool) -> None:
        """Make a loop current; hand it to the player now if we are playing."""
        self.current = (entry, audio)
        self.entries_by_id[entry.id] = entry
        # Keep only entries still referenced by history or the current loop.
        keep = {h["id"] for h in self.history} | {entry.id}
        for key in [k for k in self.entries_by_id if k not in keep]:
            del self.entries_by_id[key]
        if audible:
            self._hand_to_player(crossfade)

    def _hand_to_player(self, crossfade: float) -> None:
        assert self.current is not None
        entry, audio = self.current
        self.handoff.stretch = self.cfg.playback.align  # read at each hand-off: reloadable
        self.handoff.hand(
            entry.id, audio, crossfade, grid=entry.grid_at(self.player.rate), bpm=entry.bpm
        )
        self.skip_pending = False
        set_output_metadata(self.output, entry.prompt)  # HTTP listeners see the prompt
        self.loops_played += 1
        self.history.appendleft(
            {
                "id": entry.id,
                "prompt": entry.prompt,
                "bpm": entry.bpm,
                "seconds": entry.seconds,
                "started": time.time(),
            }
        )
        self.schedule_save()  # the history survives a restart

    def _play_loop(self, key: str, audio: Any, crossfade: float, *, grid: Any, bpm: Any) -> None:
        """The hand-off's delivery: the loop as it will sound (perhaps tempo-matched)."""
        self.player.play_loop(
            key, audio, crossfade, grid=grid, bpm=bpm, align=self.cfg.playback.align
        )
        self._vary(key, audio, grid, bpm)

    def _vary(self, key: str, audio: Any, grid: Any, bpm: Any) -> None:
        """playback.variation branch: build the jump table of the loop just handed over,
        with the ready queue's and the library's loops of its prompt, off the event loop,
        then give it to the loop's deck."""
        if self._varying is not None and not self._varying.done():
            self._varying.cancel()  # a table for a loop that is already on its way out
        entry = self.entries_by_id.get(key)
        if self.cfg.playback.variation != "branch" or entry is None:
            return
        from infiniloopd.player.variation import PoolLoop, build_brancher

        rate = self.player.rate
        library = self.library

        def load(e: Any) -> PoolLoop:
            return PoolLoop(e.id, library.load(e), e.grid_at(rate), e.bpm)

        want = prompt_key(entry.prompt)
        same = [*self.producer.ready(), *reversed(library.entries())]
        others = [
            (None, functools.partial(load, e))
            for e in same
            if e.id != key and prompt_key(e.prompt) == want
        ]
        seed = None if self.variation_seed is None else self.variation_seed + self.loops_played
        current = PoolLoop(key, audio, grid, bpm)
        task = asyncio.ensure_future(asyncio.to_thread(build_brancher, current, others, rate, seed))
        self._varying = task

        def done(task: asyncio.Future) -> None:
            if task.cancelled():
                return
            if task.exception() is not None:
                log.warning("variation: no jump table for %s: %s", key, task.exception())
                return
            self.player.set_variation(key, task.result())

        task.add_done_callback(done)

    async def settled(self) -> None:
        """Until the loop handed over last is with the player, jump table and all."""
        await self.handoff.wait()
        while self._varying is not None and not self._varying.done():
            await asyncio.wait({self._varying})

    def _touch(self, entry: Any) -> None:
        try:
            self.library.touch(entry)
        except (OSError, UserError) as exc:
            log.warning("library: cannot mark %s played: %s", entry.id, exc)

    async def _switch_loop(self) -> None:
        """Decide when the next loop starts: the producer's policy, our play state."""
        while True:
            await asyncio.sleep(TICK)
            try:
                self.switch_tick()
            except Exception:
                log.exception("loop switching failed (will retry)")

    def switch_tick(self) -> None:
        """One decision of the switcher: start the next loop now or not. The daemon
        calls it every TICK seconds; `infiniloopd record` every TICK of rendered audio."""
        if self.handoff.busy:
            return  # a loop is being tempo-matched; the player gets it in a moment
        if self.skip_pending:
            # `next` was asked for before a loop was ready: take the first one that is.
            ready = self.producer.take_ready()
            if ready is not None:
                self._start_loop(*ready, crossfade=self.settings.crossfade, audible=True)
                if self.mode != "playing":
                    self._set_mode("playing")
                return
        if self.mode != "playing":
            return
        st = self.player.status()
        if self.current is None or st.key is None:
            ready = self.producer.take_ready()
            if ready is not None:
                self._start_loop(*ready, crossfade=self.settings.crossfade, audible=True)
            return
        if self.prompt_pending and self._ready_for_prompt():
            # A new prompt is heard as soon as its first loop is ready, not after min_play.
            self.prompt_pending = False
            ready = self.producer.take_ready()
            if ready is not None:
                self._start_loop(*ready, crossfade=self.settings.crossfade, audible=True)
            return
        if self.producer.should_switch(st.played, self.settings.min_play):
            ready = self.producer.take_ready()
            if ready is not None:
                self._start_loop(*ready, crossfade=self.settings.crossfade, audible=True)

    def _ready_for_prompt(self) -> bool:
        want = prompt_key(self.settings.prompt)
        return any(prompt_key(e.prompt) == want for e in self.producer.ready())

    # --- status -----------------------------------------------------------------------

    def status_text(self) -> str:
        """One line for systemd's STATUS=: what plays and what is generating."""
        parts = [self.mode]
        sleep = self.sleep_status()
        if sleep is not None:
            parts.append(f"sleep in {sleep['remaining'] / 60:.0f} min")
        if self.current is not None:
            parts.append(f"loop {self.current[0].id}")
        parts.append(f"prompt {self.settings.prompt[:60]!r}")
        with contextlib.suppress(Exception):
            ps = self.producer.status()
            if ps.get("generating"):
                pr = ps.get("progress")
                parts.append(f"generating {pr * 100:.0f}%" if pr is not None else "generating")
            parts.append(f"queue {ps.get('queue', 0)}")
            if ps.get("consecutive_failures"):
                parts.append(f"failing: {ps.get('last_error')}")
        return ", ".join(parts)

    def _refresh_status(self) -> None:
        text = self.status_text()
        if text != self._last_status:
            self._last_status = text
            self._notify(f"STATUS={text}")

    def status(self) -> dict[str, Any]:
        """Everything about what plays and what is generating (the `status` command)."""
        st = self.player.status()
        ps = self.producer.status()
        gen = self.effective_config().generator
        loop = None
        if self.current is not None:
            entry = self.current[0]
            loop = {
                "id": entry.id,
                "prompt": entry.prompt,
                "bpm": entry.bpm,
                "seconds": st.loop_seconds or entry.seconds,
                "position": st.position,
                "repeats": st.repeats,
                "played": st.played,
                "crossfading": st.crossfading,
            }
        loops, size = len(self.library.entries()), self.library.size_bytes()
        return {
            "state": self.mode,
            "player_state": st.state,
            "prompt": self.settings.prompt,
            "preset": self.settings.preset,
            "loop": loop,
            "loops_played": self.loops_played,
            "queue": len(self.producer.ready()),
            "skip_pending": self.skip_pending,
            "volume": self.settings.volume,
            "crossfade": self.settings.crossfade,
            "min_play": self.settings.min_play,
            "generating": bool(ps.get("generating")),
            "progress": ps.get("progress"),
            "phase": ps.get("phase"),
            "generator": {
                "backend": gen.backend,
                "model": gen.model,  # the MusicGPT model setting
                "seconds": gen.seconds,
                "uses": ps.get("uses"),
                "servers": ps.get("servers"),
            },
            "failures": ps.get("failures", 0),
            "consecutive_failures": ps.get("consecutive_failures", 0),
            "last_error": ps.get("last_error"),
            "fallback": ps.get("fallback", False),
            "stats": ps.get("stats", {}),
            "library": {"loops": loops, "mb": round(size / 1e6, 1)},
            "output": st.output,
            "output_ok": st.output_ok,
            "xruns": st.xruns,
            "stalls": st.stalls,
            "outputs": output_states(self.output, st),
            "uptime": time.monotonic() - self.started,
            "pid": os.getpid(),
            "worker_pid": getattr(self.worker, "pid", None),
            "version": __version__,
            "config": self.cfg.source,
            "last_seq": self.event_seq,
            "sleep": self.sleep_status(),
        }

    def ready_loops(self) -> list[dict[str, Any]]:
        """The ready queue, each {id, prompt, bpm, seconds}."""
        return [
            {"id": e.id, "prompt": e.prompt, "bpm": e.bpm, "seconds": e.seconds}
            for e in self.producer.ready()
        ]

    # --- play state -------------------------------------------------------------------

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            self.emit("state", {"state": mode})
            self.schedule_save()
            self._refresh_status()

    def play(self) -> None:
        """Start or resume playing."""
        st = self.player.status()
        if self.mode == "paused" and st.key is not None:
            self.player.resume()
        elif st.key is None and self.current is not None:
            # Stopped, or paused since start-up before any loop reached the player.
            self._hand_to_player(0.0)
        self._set_mode("playing")

    def pause(self) -> None:
        """Pause (position kept)."""
        if self.mode == "playing":
            self.player.pause()
            self._set_mode("paused")

    def toggle(self) -> None:
        """Pause if playing, else play."""
        if self.mode == "playing":
            self.pause()
        else:
            self.play()

    def stop(self) -> None:
        """Stop playing (the next play starts the current loop from its beginning)."""
        self.player.stop()
        self.handoff.forget()
        self._set_mode("stopped")

    async def next(self) -> NextResult:
        """Crossfade to the next loop now, or as soon as one is ready (`pending`)."""
        ready = self.producer.take_ready()
        if ready is None:
            ready = await self._library_next()
        if ready is None:
            # Nothing to switch to yet: the skip waits for the next loop (see switch_tick).
            never = self._never_ready()
            if never:
                raise NotReady(f"next: {never}")
            if not self.skip_pending:
                self.skip_pending = True
                self.emit("skip_pending", {})
                self._refresh_status()
            return NextResult(pending=True, message=self._pending_text())
        self._start_loop(*ready, crossfade=self.settings.crossfade, audible=True)
        if self.mode != "playing":
            self._set_mode("playing")
        return NextResult(pending=False)

    async def _library_next(self) -> tuple[Any, Any] | None:
        """A library loop of the current prompt other than the playing one, loaded."""
        playing = {self.current[0].id} if self.current is not None else set()
        entry = self.library.pick(self.settings.prompt, playing)
        if entry is None or prompt_key(entry.prompt) != prompt_key(self.settings.prompt):
            return None
        try:
            audio = await asyncio.to_thread(self.library.load, entry)
        except UserError as exc:
            log.warning("%s", exc)
            return None
        await asyncio.to_thread(self._touch, entry)
        return entry, audio

    def _never_ready(self) -> str | None:
        """Why no loop can come for a skip (a failing generator and nothing else), or None."""
        ps = self.producer.status()
        if not ps.get("consecutive_failures"):
            return None
        playing = self.current[0].id if self.current is not None else None
        if any(e.id != playing for e in self.library.entries()):
            return None
        return (
            "no other loop: the generator is failing "
            f"({ps.get('last_error') or 'see the daemon log'}) and the library has none"
        )

    def _pending_text(self) -> str:
        """When a pending skip will happen, for the user who asked for it."""
        ps = self.producer.status()
        progress = ps.get("progress")
        if ps.get("generating") and isinstance(progress, (int, float)):
            return f"next: as soon as the loop being generated is ready ({progress * 100:.0f}%)"
        if ps.get("retry_in"):
            return (
                f"next: as soon as a loop is ready (generator retrying in "
                f"{ps['retry_in']:.0f} s after: {ps.get('last_error')})"
            )
        return "next: as soon as the next loop is ready"

    # --- sleep timer ----------------------------------------------------------------

    def sleep(self, seconds: float | None) -> None:
        """Pause after `seconds`, fading out over the last minute; None cancels the timer."""
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 < seconds <= SLEEP_MAX
        ):
            raise InvalidValue(
                f"sleep: expected seconds above 0 and at most 86400, got {seconds!r}"
            )
        self._cancel_sleep()
        if seconds is None:
            self.emit("sleep", {"remaining": None})
            self._refresh_status()
            return
        assert self.loop is not None
        self._sleep_deadline = self.loop.time() + float(seconds)
        self._sleep_task = asyncio.create_task(self._sleep_run(float(seconds)), name="sleep")
        self.emit("sleep", {"remaining": float(seconds)})
        self._refresh_status()

    def sleep_status(self) -> dict[str, float] | None:
        """{"remaining": seconds} while a sleep timer runs, else None."""
        if self._sleep_deadline is None or self.loop is None:
            return None
        return {"remaining": max(0.0, self._sleep_deadline - self.loop.time())}

    def _cancel_sleep(self) -> None:
        task, self._sleep_task = self._sleep_task, None
        self._sleep_deadline = None
        if task is not None and not task.done():
            task.cancel()
            if self.player is not None:
                self.player.set_volume(self.settings.volume / 100)  # undo a fade under way

    async def _sleep_run(self, total: float) -> None:
        assert self.loop is not None and self._sleep_deadline is not None
        deadline = self._sleep_deadline
        fade = fade_length(total)
        await asyncio.sleep(max(0.0, deadline - fade - self.loop.time()))
        # The fade works on the player's gain only: the volume setting stays, so the
        # next `play` sounds as loud as before the timer.
        while (remaining := deadline - self.loop.time()) > 0:
            self.player.set_volume(self.settings.volume / 100 * fade_gain(remaining, fade))
            await asyncio.sleep(min(SLEEP_STEP, remaining))
        self.player.set_volume(0.0)
        self._sleep_task = None
        self._sleep_deadline = None
        log.info("sleep timer: pausing")
        self.pause()
        self.player.set_volume(self.settings.volume / 100)  # paused: silent either way
        self.emit("sleep", {"remaining": None, "expired": True})
        self._refresh_status()

    # --- schedule -------------------------------------------------------------------

    def _check_schedule(self, cfg: Config) -> None:
        """Every preset the schedule names exists; UserError naming each entry that fails."""
        wanted = [e for e in cfg.schedule if e.preset is not None]
        if not wanted:
            return
        presets = self.presets()
        bad = [
            f"{cfg.source}: schedule[{e.index}].preset: no preset {e.preset!r} "
            f"(presets: {', '.join(sorted(presets))})"
            for e in wanted
            if e.preset not in presets
        ]
        if bad:
            raise ConfigError("\n".join(bad), bad)

    def schedule(self, count: int = 10) -> list[dict[str, Any]]:
        """The next `count` firings of the schedule, soonest first."""
        if self.scheduler is None:
            return []
        return self.scheduler.upcoming(count)

    def _replace_schedule(self, cfg: Config) -> None:
        if self.scheduler is not None:
            self.scheduler.replace(cfg.schedule)
        elif cfg.schedule and self.loop is not None:
            from infiniloopd.core.schedule import Scheduler

            self.scheduler = Scheduler(self, cfg.schedule)
            self.tasks.append(asyncio.create_task(self.scheduler.run(), name="schedule"))

    # --- prompt and presets -----------------------------------------------------------

    @property
    def prompt(self) -> str:
        return self.settings.prompt

    @property
    def preset(self) -> str | None:
        return self.settings.preset

    def _set_prompt(self, prompt: Prompt, *, keep: bool, preset: str | None) -> int:
        text = prompt.text
        before = len(self.producer.ready())
        self.producer.set_prompt(text, keep=keep)
        if self.current is None or not prompt.same_as(self.current[0].prompt):
            self.prompt_pending = True
        self.settings.prompt = text
        self.settings.preset = preset
        dropped = max(0, before - len(self.producer.ready()))
        self.emit("prompt", {"prompt": text, "keep": keep, "preset": preset, "dropped": dropped})
        self.schedule_save()
        self._refresh_status()
        return dropped

    def set_prompt(self, text: str | Prompt, *, keep: bool = False) -> int:
        """Generate for a new prompt from now on; returns how many queued loops were dropped.

        Unless `keep`, queued loops of the old prompt are dropped and the first loop of
        the new one crossfades in as soon as it is ready.
        """
        prompt = text if isinstance(text, Prompt) else Prompt.parse(text)
        self._clear_preset_generator()
        return self._set_prompt(prompt, keep=keep, preset=None)

    def presets(self, *, reread: bool = True) -> dict[str, Any]:
        """The mood presets by name (the user's file is re-read unless `reread` is False)."""
        from infiniloopd.presets import load_presets

        if reread:
            self._presets = None  # pick up edits to the user's presets file
        if self._presets is None:
            self._presets = load_presets()
        return self._presets

    def _clear_preset_generator(self) -> bool:
        s = self.settings
        if not s.preset_keys:
            return False
        for key in s.preset_keys:
            s.generator.pop(key, None)
        s.preset_keys = set()
        return True

    def apply_preset(self, name: str) -> Any:
        """Switch to a mood preset (its prompt and generator settings); returns the Preset."""
        presets = self.presets()
        preset = presets.get(name)
        if preset is None:
            raise NotFound(f"preset: no preset {name!r} (presets: {', '.join(sorted(presets))})")
        changed = self._clear_preset_generator()
        if preset.generator:
            self.settings.generator.update(preset.generator)
            self.settings.preset_keys = set(preset.generator)
            changed = True
        if changed:
            self._apply_generator()
        self._set_prompt(Prompt.parse(preset.prompt, f"preset {name}"), keep=False, preset=name)
        return preset

    # --- playback settings ------------------------------------------------------------

    @property
    def volume(self) -> int:
        return self.settings.volume

    def set_volume(self, percent: float) -> int:
        """Set the volume, clamped to 0..100 and rounded; returns it."""
        if isinstance(percent, bool) or not isinstance(percent, (int, float)):
            raise InvalidValue(f"volume: expected a number between 0 and 100, got {percent!r}")
        if percent != percent:  # NaN
            raise InvalidValue("volume: expected a number between 0 and 100, got nan")
        volume = int(round(min(100.0, max(0.0, percent))))
        if volume != self.settings.volume:
            self.settings.volume = volume
            self.player.set_volume(volume / 100)
            self.emit("volume", {"volume": volume})
            self.schedule_save()
        return self.settings.volume

    def _option(self, name: str, value: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= hi:
            label = name.replace("_", "-")
            raise InvalidValue(f"{label}: expected seconds between 0 and {hi:g}, got {value!r}")
        value = float(value)
        if value != getattr(self.settings, name):
            setattr(self.settings, name, value)
            self.emit("option", {"name": name, "value": value})
            self.schedule_save()
        return getattr(self.settings, name)

    def set_crossfade(self, seconds: float) -> float:
        """Set how long loops crossfade, in seconds (0..60)."""
        return self._option("crossfade", seconds, CROSSFADE_MAX)

    def set_min_play(self, seconds: float) -> float:
        """Set how long a loop plays at least before the next one, in seconds."""
        return self._option("min_play", seconds, MIN_PLAY_MAX)

    # --- generator settings -------------------------------------------------------------

    def generator_settings(self) -> dict[str, Any]:
        gen = self.effective_config().generator
        return {"backend": gen.backend, "model": gen.model, "seconds": gen.seconds}

    def _generator_setting(self, key: str, value: Any) -> dict[str, Any]:
        gen = self.effective_config().generator
        if value != getattr(gen, key):
            try:
                parse_config({"generator": {key: value}}, COMMAND_FOR_KEY[key])
            except ConfigError as exc:
                # "command: generator.model: expected one of ..., got ..."
                raise InvalidValue(str(exc)) from None
            if key == "backend" and value == "command" and not self.cfg.generator.command:
                raise InvalidValue(
                    "generator: the command backend needs generator.command in the config"
                )
            previous = dict(self.settings.generator)
            self.settings.generator[key] = value
            self.settings.preset_keys.discard(key)
            try:
                self._apply_generator()
            except UserError as exc:
                self.settings.generator = previous
                raise Failed(str(exc)) from None
            self.schedule_save()
        return self.generator_settings()

    def _apply_generator(self) -> None:
        gen = self.effective_config().generator
        self.producer.update_generator(gen)
        self.emit("generator", {"backend": gen.backend, "model": gen.model, "seconds": gen.seconds})

    def set_generator(self, backend: str) -> dict[str, Any]:
        """Switch the generator backend; returns the generator settings."""
        return self._generator_setting("backend", backend)

    def set_model(self, model: str) -> dict[str, Any]:
        """Switch the generator model; returns the generator settings."""
        return self._generator_setting("model", model)

    def set_duration(self, seconds: float) -> dict[str, Any]:
        """Set the length of generated clips; returns the generator settings."""
        return self._generator_setting("seconds", seconds)

    # --- loops --------------------------------------------------------------------------

    async def save(self, path: str | None = None, *, force: bool = False) -> dict[str, Any]:
        """Save the current loop into the music dir (WAV or FLAC by extension)."""
        if self.current is None:
            raise NotReady("save: nothing is playing yet")
        entry, audio = self.current
        music = Path(self.cfg.library.music_dir)
        dest = resolve_save_path(music, path, entry)
        meta = {
            **_jsonable(entry.to_json()),
            "saved_at": time.time(),
            "saved_as": str(dest),
            "format": SAVE_EXTENSIONS[dest.suffix.lower()],
            "rate": self.player.rate,
            "channels": self.player.channels,
        }
        await asyncio.to_thread(write_loop_file, dest, audio, self.player.rate, meta, force)
        self.emit("saved", {"path": str(dest), "id": entry.id})
        return {"path": str(dest), "sidecar": str(dest.with_suffix(".json")), "id": entry.id}

    def queue(self) -> list[dict[str, Any]]:
        """The loops ready to play, as JSON entries."""
        return [_entry_json(e) for e in self.producer.ready()]

    def history_entries(self) -> list[dict[str, Any]]:
        """The loops played, newest first."""
        return list(self.history)

    def library_summary(self, limit: int = 20) -> dict[str, Any]:
        """The library's size and its newest `limit` entries."""
        entries = sorted(self.library.entries(), key=lambda e: e.created, reverse=True)
        size = self.library.size_bytes()
        return {
            "loops": len(entries),
            "mb": round(size / 1e6, 1),
            "max_mb": self.cfg.library.max_mb,
            "dir": str(self.cfg.library.dir),
            "entries": [_entry_json(e) for e in entries[:limit]],
        }

    # --- reload -------------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Re-read the config; apply it all without a gap, or keep the old one entirely."""
        from infiniloopd.outputs import build_output

        self._notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
        old = self.cfg
        try:
            try:
                new = await asyncio.to_thread(load_config, self.config_path)
            except UserError as exc:
                log.error("%s", exc)
                self.emit("error", {"message": str(exc)})
                raise
            changed = [
                name
                for name in ("prompt", "log_level", *self._sections(), "schedule")
                if getattr(new, name) != getattr(old, name)
            ]
            if new.schedule != old.schedule:
                try:
                    self._check_schedule(new)
                except UserError as exc:
                    log.error("%s", exc)
                    self.emit("error", {"message": str(exc)})
                    raise
            output = None
            if new.output != old.output or new.outputs != old.outputs:
                if (new.output.rate, new.output.channels) != (old.output.rate, old.output.channels):
                    log.warning("output.rate and output.channels take effect after a restart")
                try:
                    output = await asyncio.to_thread(build_output, new)
                except UserError as exc:
                    log.error("%s", exc)
                    self.emit("error", {"message": str(exc)})
                    raise
            # Everything validated: apply.
            self.cfg = new
            if output is not None:
                self.player.replace_output(output)
                self.output = output
                if self.current is not None:
                    set_output_metadata(output, self.current[0].prompt)
            logging.getLogger().setLevel(new.log_level.upper())
            s = self.settings
            for key in ("crossfade", "min_play", "volume"):
                if getattr(new.playback, key) != getattr(old.playback, key):
                    setattr(s, key, getattr(new.playback, key))
            if new.playback.volume != old.playback.volume:
                self.player.set_volume(s.volume / 100)
            if new.generator != old.generator:
                self.producer.update_generator(self.effective_config().generator)
            if new.prompt != old.prompt:
                self._set_prompt(Prompt.parse(new.prompt), keep=False, preset=None)
            for name in ("analysis", "library", "control"):
                if name in changed:
                    log.warning("%s: changes take effect after a restart", name)
            self._presets = None
            if "schedule" in changed:
                self._replace_schedule(new)
            self.schedule_save()
            log.info(
                "config reloaded from %s (changed: %s)", new.source, ", ".join(changed) or "nothing"
            )
            self.emit("config_reloaded", {"config": new.source, "changed": changed})
            return {"config": new.source, "changed": changed}
        finally:
            self._notify("READY=1", f"STATUS={self.status_text()}")

    @staticmethod
    def _sections() -> tuple[str, ...]:
        return ("generator", "output", "playback", "analysis", "library", "control")


# --- helpers ----------------------------------------------------------------------------


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _sweep_leftovers(cfg: Config) -> None:
    """What a crash leaves: our temp files in the music and state dirs, generator helpers."""
    from infiniloopd.atomic import sweep_temp_files
    from infiniloopd.generators.base import kill_orphaned_generators

    for directory in (Path(cfg.library.music_dir), paths.state_dir()):
        for path in sweep_temp_files(directory):
            log.info("removed %s (left by an interrupted write)", path)
    kill_orphaned_generators()


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def _entry_json(entry: Any) -> dict[str, Any]:
    data = _jsonable(entry.to_json())
    data.pop("path", None)
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "loop"


def resolve_save_path(music_dir: Path, given: str | None, entry: Any) -> Path:
    """Where `save` writes: inside the music dir, .wav or .flac; InvalidValue otherwise."""
    if not given:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        given = f"{stamp}-{_slug(entry.prompt)}-{entry.id[:8]}.flac"
    candidate = Path(os.path.expanduser(given))
    if not candidate.is_absolute():
        candidate = music_dir / candidate
    root = music_dir.resolve()
    dest = candidate.resolve()  # follows symlinks and .., so the check below is honest
    if dest != root and root not in dest.parents:
        raise InvalidValue(f"save: {given}: must be inside the music dir {music_dir}")
    if dest.suffix.lower() not in SAVE_EXTENSIONS:
        raise InvalidValue(f"save: {given}: expected a .wav or .flac file name")
    return dest


def write_loop_file(dest: Path, audio: Any, rate: int, meta: dict[str, Any], force: bool) -> None:
    """Write the loop and its JSON sidecar atomically; never overwrite unless `force`."""

    sidecar = dest.with_suffix(".json")
    if not force:
        for path in (dest, sidecar):
            if path.exists():
                raise Exists(f"save: {path} exists (use --force to overwrite)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fmt = SAVE_EXTENSIONS[dest.suffix.lower()]
    subtype = "PCM_24"
    written: list[Path] = []
    # A user's music files, not private ones; without --force never replaced, not even
    # by a file that appears while writing.
    opts = {"mode": 0o644, "overwrite": force}
    # A save that fails leaves nothing behind; only files it created are removed.
    existed = {path for path in (dest, sidecar) if path.exists()}
    try:
        write_audio_atomic(dest, audio, rate, format=fmt, subtype=subtype, **opts)
        written.append(dest)
        write_json_atomic(sidecar, meta, **opts)
        written.append(sidecar)
    except FileExistsError:
        for path in written:
            path.unlink(missing_ok=True)
        raise Exists(f"save: {dest} exists (use --force)") from None
    except OSError as exc:
        for path in written:
            if path not in existed:
                path.unlink(missing_ok=True)
        raise Failed(f"save: {dest}: {exc.strerror or exc}") from None
