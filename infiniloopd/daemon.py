"""The daemon: wires config, player, library, analyzer worker, producer and control.

One asyncio loop on the main thread owns all state: it serves the control socket,
runs the producer, decides when to switch loops, handles signals and talks to
systemd. The audio thread (in `player`) and the analyzer process (in `worker`) only
exchange messages with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import signal
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

from infiniloopd import __version__, paths, protocol
from infiniloopd.atomic import write_audio_atomic, write_json_atomic
from infiniloopd.config import Config, ConfigError, load_config, parse_config
from infiniloopd.control import Arg, Command, ControlServer
from infiniloopd.errors import UserError
from infiniloopd.outputs import output_states, set_output_metadata
from infiniloopd.protocol import ProtocolError
from infiniloopd.state import HISTORY_MAX, State, load_state, save_state

log = logging.getLogger(__name__)

TICK = 0.2  # seconds between looks at the player and the producer
STATE_SAVE_DELAY = 1.0  # changes are batched into one state write
HEARTBEAT_FRESH = 2.0  # an audio thread silent for longer than this is hung
FADE_OUT = 0.3  # SIGTERM fade (the issue allows up to 0.5 s)
SAVE_EXTENSIONS = {".wav": "WAV", ".flac": "FLAC"}
COMMAND_FOR_KEY = {"model": "model", "seconds": "duration", "backend": "generator"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None, help="config file (default: the user's config.yaml)"
    )
    parser.add_argument(
        "--endpoint", default=None, help="control endpoint (ipc://PATH or tcp://HOST:PORT)"
    )


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)  # a UserError here is printed by __main__, exit 1
    logging.getLogger().setLevel(cfg.log_level.upper())
    if getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.DEBUG)
    lock = DaemonLock(protocol.lock_path())
    lock.acquire()
    try:
        return asyncio.run(Daemon(cfg, args.config, args.endpoint).run())
    finally:
        lock.release()


# --- one daemon per user ----------------------------------------------------------------


class DaemonLock:
    """An flock on a file in the runtime dir, holding the running daemon's PID."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        paths.ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = protocol.running_pid()
            who = f"pid {pid}" if pid else "another process"
            how = f" or `kill {pid}`" if pid else ""
            raise UserError(
                f"already running ({who}, lock {self.path}); stop it with "
                f"`systemctl --user stop infiniloop`{how}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        # Emptied, not removed: removing a lock file races with the next daemon opening it.
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)
        self.fd = None


# --- systemd ----------------------------------------------------------------------------


class Notifier:
    """sd_notify(3): datagrams to $NOTIFY_SOCKET; does nothing when not under systemd."""

    def __init__(self) -> None:
        address = os.environ.pop("NOTIFY_SOCKET", "")  # not for our child processes
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        usec = os.environ.pop("WATCHDOG_USEC", "")
        wpid = os.environ.pop("WATCHDOG_PID", "")
        self.watchdog: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not wpid or wpid == str(os.getpid())):
            self.watchdog = int(usec) / 1e6
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, *lines: str) -> None:
        if self._sock is None or self.address is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# --- the daemon -------------------------------------------------------------------------


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


class Daemon:
    def __init__(self, cfg: Config, config_path: Path | None, endpoint: str | None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.endpoint_override = endpoint
        self.notifier = Notifier()
        self.started = time.monotonic()
        self.stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task] = []
        self.mode = "playing"  # the user's intent: playing | paused | stopped
        self.current: tuple[Any, Any] | None = None  # (LoopEntry, audio)
        self.output: Any = None  # what the player writes to (one output, or a fan-out)
        self.loops_played = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_MAX)
        self.entries_by_id: dict[str, Any] = {}
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_status = ""
        self._reloading = False
        self._presets: dict[str, Any] | None = None
        self.prompt_pending = False  # a new prompt whose first loop is not playing yet
        self.skip_pending = False  # `next` asked for while no loop was ready
        self.state = load_state()
        self.history.extend(self.state.history)  # what played before the restart
        self.settings = self._settings_from(cfg, self.state)

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
        if self.loop is None or self._save_handle is not None:
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

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Publish an event (main thread)."""
        self.control.publish(name, data or {})
        if name in ("loop_ready", "generation_finished", "generation_failed"):
            self._refresh_status()
        if name == "loop_ready" and self.current is None:
            # The very first loop: start it now rather than at the next switch tick.
            try:
                self._switch_tick()
            except Exception:
                log.exception("loop switching failed (will retry)")

    def _player_event(self, name: str, data: dict[str, Any]) -> None:
        # Called on the audio thread: hop to the loop, do nothing else here.
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

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> int:
        from infiniloopd.library import Library
        from infiniloopd.outputs import build_output
        from infiniloopd.player.engine import Player
        from infiniloopd.producer import Producer
        from infiniloopd.worker import AnalyzerWorker

        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        cfg = self.cfg
        await asyncio.to_thread(_sweep_leftovers, cfg)
        endpoints = protocol.resolve_endpoints(self.endpoint_override, cfg.control.endpoint)
        for path in (endpoints.control_path, endpoints.events_path):
            if path is not None:
                paths.ensure_private_dir(path.parent)
        curve = allowed = None
        if cfg.control.curve_secret_key_file is not None:
            curve = protocol.read_curve_key(cfg.control.curve_secret_key_file, secret=True)
        if cfg.control.curve_allowed_keys_dir is not None:
            allowed = protocol.read_allowed_keys(cfg.control.curve_allowed_keys_dir)
        elif not endpoints.is_ipc:
            # $INFINILOOP_ENDPOINT or --endpoint may make it tcp:// after the config check.
            raise UserError(
                f"{endpoints.control}: a tcp:// endpoint needs control.curve_allowed_keys_dir "
                "(the client public keys allowed in)"
            )
        self.control = ControlServer(
            endpoints, self._commands(), curve_secret=curve, curve_allowed=allowed
        )

        out = cfg.output
        output = self.output = await asyncio.to_thread(build_output, cfg)
        self.player = Player(
            output,
            rate=out.rate,
            channels=out.channels,
            block_ms=out.block_ms,
            volume=self.settings.volume / 100,
            on_event=self._player_event,
        )
        # A file that cannot be written is a config error; a sound server that is not
        # up yet is retried in the background so the daemon stays controllable.
        self.player.start(retry=out.backend not in ("file",))

        try:
            self.library = Library(
                cfg.library.dir, cfg.library.max_mb, rate=out.rate, channels=out.channels
            )
            await asyncio.to_thread(self.library.scan)
            a = cfg.analysis
            self.worker = AnalyzerWorker(
                rate=out.rate,
                channels=out.channels,
                target_lufs=a.target_lufs,
                peak_ceiling_db=a.peak_ceiling_db,
                min_loop=a.min_loop,
                max_loop=a.max_loop,
            )
            spool = paths.ensure_dir(paths.cache_dir() / "spool")
            self.producer = Producer(
                self.effective_config(),
                self.library,
                self.worker,
                self.emit,
                prompt=self.settings.prompt,
                spool=spool,
            )
            if self.state.stats:
                self.producer.stats = self.state.stats
            self.control.start()
        except BaseException:
            self.player.close()
            raise
        self.mode = "paused" if self.settings.paused else "playing"
        await self._play_first()
        self._install_signals()
        self.tasks += [
            asyncio.create_task(self.control.serve(), name="control"),
            asyncio.create_task(self._run_producer(), name="producer"),
            asyncio.create_task(self._switch_loop(), name="switcher"),
            asyncio.create_task(self._systemd_loop(), name="systemd"),
        ]
        self.notifier.send("READY=1", f"STATUS={self.status_text()}", f"MAINPID={os.getpid()}")
        log.info(
            "infiniloopd %s running (pid %d): output %s, prompt %r",
            __version__,
            os.getpid(),
            self.player.status().output,
            self.settings.prompt,
        )
        self.emit("started", {"pid": os.getpid(), "version": __version__})
        await self.stop_event.wait()
        await self._shutdown()
        return 0

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

    def _install_signals(self) -> None:
        assert self.loop is not None and self.stop_event is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._on_stop_signal, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, sig: int) -> None:
        log.info("%s: fading out and stopping", signal.Signals(sig).name)
        assert self.stop_event is not None
        self.stop_event.set()

    def _on_hup(self) -> None:
        task = asyncio.ensure_future(self._reload_logged())
        self.tasks.append(task)
        task.add_done_callback(self._forget_task)

    async def _reload_logged(self) -> None:
        with contextlib.suppress(UserError):  # already logged and published by reload()
            await self.reload()

    async def _shutdown(self) -> None:
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        self.emit("stopping", {})
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        snapshot = self._state_snapshot()
        # Fade first (bounded, ≤ 0.5 s), then everything else in silence.
        await asyncio.to_thread(self.player.fade_out, FADE_OUT)
        self._write_state(snapshot)
        await self.control.drain()  # a `save` in progress finishes and answers
        self.control.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await asyncio.wait_for(self.worker.close(), 5.0)
        except Exception as exc:  # best effort at exit
            log.warning("analyzer worker did not close cleanly: %s", exc)
        await asyncio.to_thread(self.player.close)
        self.notifier.close()
        log.info("stopped")

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
        self.player.play_loop(entry.id, audio, crossfade)
        self._vary(entry, audio)
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

    def _vary(self, entry: Any, audio: Any) -> None:
        """playback.variation branch: build the loop's jump table (with the ready queue's
        and the library's loops of its prompt) off the audio thread, then hand it over."""
        if self.cfg.playback.variation != "branch":
            return
        from infiniloopd.player.variation import PoolLoop, build_brancher
        from infiniloopd.producer import prompt_key

        def pool_loop(e: Any, a: Any = None) -> PoolLoop:
            a = self.library.load(e) if a is None else a
            return PoolLoop(e.id, a, getattr(e, "grid", None), e.bpm, e.rate)

        same = [e for e in [*self.producer.ready(), *reversed(self.library.entries())]]
        same = [e for e in same if prompt_key(e.prompt) == prompt_key(entry.prompt)]
        others = [(None, lambda e=e: pool_loop(e)) for e in same if e.id != entry.id]
        job = asyncio.to_thread(build_brancher, pool_loop(entry, audio), others, self.player.rate)

        def done(task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.warning("variation: no jump table for %s: %s", entry.id, task.exception())
            elif not task.cancelled():
                self.player.set_variation(entry.id, task.result())

        asyncio.ensure_future(job).add_done_callback(done)

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
                self._switch_tick()
            except Exception:
                log.exception("loop switching failed (will retry)")

    def _switch_tick(self) -> None:
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
        want = " ".join(self.settings.prompt.lower().split())
        return any(" ".join(e.prompt.lower().split()) == want for e in self.producer.ready())

    # --- systemd and status -----------------------------------------------------------

    def status_text(self) -> str:
        """One line for systemd's STATUS=: what plays and what is generating."""
        parts = [self.mode]
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
            self.notifier.send(f"STATUS={text}")

    async def _systemd_loop(self) -> None:
        period = min(1.0, self.notifier.watchdog / 2) if self.notifier.watchdog else 1.0
        while True:
            await asyncio.sleep(period)
            self._refresh_status()
            if self.notifier.watchdog is None:
                continue
            st = self.player.status()
            # Only the audio thread moves the heartbeat: if it hangs, we stop petting
            # the watchdog and systemd restarts us.
            if time.monotonic() - st.heartbeat < HEARTBEAT_FRESH and self.player.alive:
                self.notifier.send("WATCHDOG=1")
            else:
                log.error("audio thread unresponsive for %.1f s", time.monotonic() - st.heartbeat)

    # --- reload ---------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Re-read the config; apply it all without a gap, or keep the old one entirely."""
        from infiniloopd.outputs import build_output

        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
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
                for name in ("prompt", "log_level", *self._sections())
                if getattr(new, name) != getattr(old, name)
            ]
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
                self._set_prompt(new.prompt, keep=False, preset=None)
            for name in ("analysis", "library", "control"):
                if name in changed:
                    log.warning("%s: changes take effect after a restart", name)
            self._presets = None
            self.schedule_save()
            log.info(
                "config reloaded from %s (changed: %s)", new.source, ", ".join(changed) or "nothing"
            )
            self.emit("config_reloaded", {"config": new.source, "changed": changed})
            return {"config": new.source, "changed": changed}
        finally:
            self.notifier.send("READY=1", f"STATUS={self.status_text()}")

    @staticmethod
    def _sections() -> tuple[str, ...]:
        return ("generator", "output", "playback", "analysis", "library", "control")

    # --- commands -------------------------------------------------------------------

    def _commands(self) -> dict[str, Command]:
        seconds = {"lo": 0.0, "hi": 86400.0}
        table = [
            Command("status", self.cmd_status, help="what plays and what is generating"),
            Command("play", self.cmd_play, help="start or resume playing"),
            Command("pause", self.cmd_pause, help="pause (position kept)"),
            Command("toggle", self.cmd_toggle, help="pause if playing, else play"),
            Command("stop", self.cmd_stop, help="stop playing"),
            Command("next", self.cmd_next, help="crossfade to the next loop now"),
            Command(
                "prompt",
                self.cmd_prompt,
                (Arg("text", max_len=1000), Arg("keep", "bool")),
                "show or set the prompt",
            ),
            Command("preset", self.cmd_preset, (Arg("name", required=True, max_len=40),)),
            Command("presets", self.cmd_presets, help="list the mood presets"),
            Command("volume", self.cmd_volume, (Arg("value", "step", lo=0, hi=100),)),
            Command("crossfade", self.cmd_crossfade, (Arg("seconds", "float", lo=0, hi=60),)),
            Command("min-play", self.cmd_min_play, (Arg("seconds", "float", **seconds),)),
            Command("model", self.cmd_model, (Arg("name", max_len=100),)),
            Command("duration", self.cmd_duration, (Arg("seconds", "float", lo=0, hi=3600),)),
            Command("generator", self.cmd_generator, (Arg("name", max_len=40),)),
            Command(
                "save",
                self.cmd_save,
                (Arg("path", max_len=4096), Arg("force", "bool")),
                "save the current loop",
            ),
            Command("queue", self.cmd_queue, help="loops ready to play"),
            Command("history", self.cmd_history, help="loops played"),
            Command("library", self.cmd_library, (Arg("limit", "int", lo=0, hi=100000),)),
            Command("reload", self.cmd_reload, help="reload the config"),
            Command("events", self.cmd_events, (Arg("since", "int", lo=0, hi=2**62),)),
            Command("ping", self.cmd_ping, help="check that the daemon answers"),
            Command("version", self.cmd_version, help="versions"),
            Command("help", self.cmd_help, help="the commands"),
        ]
        return {c.name: c for c in table}

    def cmd_status(self, _args: dict[str, Any]) -> dict[str, Any]:
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
            "last_seq": self.control.last_seq,
        }

    def _with_status(self) -> dict[str, Any]:
        return {"status": self.cmd_status({})}

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.mode = mode
            self.emit("state", {"state": mode})
            self.schedule_save()
            self._refresh_status()

    def cmd_play(self, _args: dict[str, Any]) -> dict[str, Any]:
        st = self.player.status()
        if self.mode == "paused" and st.key is not None:
            self.player.resume()
        elif st.key is None and self.current is not None:
            # Stopped, or paused since start-up before any loop reached the player.
            self._hand_to_player(0.0)
        self._set_mode("playing")
        return self._with_status()

    def cmd_pause(self, _args: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "playing":
            self.player.pause()
            self._set_mode("paused")
        return self._with_status()

    def cmd_toggle(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.cmd_pause(args) if self.mode == "playing" else self.cmd_play(args)

    def cmd_stop(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.player.stop()
        self._set_mode("stopped")
        return self._with_status()

    async def cmd_next(self, _args: dict[str, Any]) -> dict[str, Any]:
        ready = self.producer.take_ready()
        if ready is None:
            ready = await self._library_next()
        if ready is None:
            # Nothing to switch to yet: the skip waits for the next loop (see _switch_tick).
            never = self._never_ready()
            if never:
                raise ProtocolError(protocol.NOT_READY, f"next: {never}")
            if not self.skip_pending:
                self.skip_pending = True
                self.emit("skip_pending", {})
                self._refresh_status()
            return {**self._with_status(), "pending": True, "message": self._pending_text()}
        self._start_loop(*ready, crossfade=self.settings.crossfade, audible=True)
        if self.mode != "playing":
            self._set_mode("playing")
        return {**self._with_status(), "pending": False}

    async def _library_next(self) -> tuple[Any, Any] | None:
        """A library loop of the current prompt other than the playing one, loaded."""
        from infiniloopd.producer import prompt_key

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

    def _set_prompt(self, text: str, *, keep: bool, preset: str | None) -> int:
        before = len(self.producer.ready())
        self.producer.set_prompt(text, keep=keep)
        if self.current is None or " ".join(self.current[0].prompt.lower().split()) != " ".join(
            text.lower().split()
        ):
            self.prompt_pending = True
        self.settings.prompt = text
        self.settings.preset = preset
        dropped = max(0, before - len(self.producer.ready()))
        self.emit("prompt", {"prompt": text, "keep": keep, "preset": preset, "dropped": dropped})
        self.schedule_save()
        self._refresh_status()
        return dropped

    def cmd_prompt(self, args: dict[str, Any]) -> dict[str, Any]:
        text = args["text"]
        if text is None:
            return {"prompt": self.settings.prompt, "preset": self.settings.preset}
        text = " ".join(text.split())
        if not text:
            raise ProtocolError(protocol.BAD_ARGUMENT, "prompt: expected a non-empty prompt")
        self._clear_preset_generator()
        dropped = self._set_prompt(text, keep=bool(args["keep"]), preset=None)
        return {"prompt": text, "dropped": dropped}

    def presets(self) -> dict[str, Any]:
        from infiniloopd.presets import load_presets

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

    def cmd_preset(self, args: dict[str, Any]) -> dict[str, Any]:
        self._presets = None  # pick up edits to the user's presets file
        presets = self.presets()
        name = args["name"]
        preset = presets.get(name)
        if preset is None:
            raise ProtocolError(
                protocol.NOT_FOUND,
                f"preset: no preset {name!r} (presets: {', '.join(sorted(presets))})",
            )
        changed = self._clear_preset_generator()
        if preset.generator:
            self.settings.generator.update(preset.generator)
            self.settings.preset_keys = set(preset.generator)
            changed = True
        if changed:
            self._apply_generator()
        self._set_prompt(preset.prompt, keep=False, preset=name)
        return {"preset": name, "prompt": preset.prompt, "generator": preset.generator}

    def cmd_presets(self, _args: dict[str, Any]) -> dict[str, Any]:
        self._presets = None
        presets = self.presets()
        return {
            "presets": [p.to_json() for _, p in sorted(presets.items())],
            "current": self.settings.preset,
        }

    def cmd_volume(self, args: dict[str, Any]) -> dict[str, Any]:
        value = args["value"]
        if value is not None:
            if isinstance(value, tuple):  # ("delta", n)
                value = self.settings.volume + value[1]
            volume = int(round(min(100.0, max(0.0, value))))
            if volume != self.settings.volume:
                self.settings.volume = volume
                self.player.set_volume(volume / 100)
                self.emit("volume", {"volume": volume})
                self.schedule_save()
        return {"volume": self.settings.volume}

    def _option(self, name: str, value: float | None) -> dict[str, Any]:
        if value is not None and value != getattr(self.settings, name):
            setattr(self.settings, name, value)
            self.emit("option", {"name": name, "value": value})
            self.schedule_save()
        return {name: getattr(self.settings, name)}

    def cmd_crossfade(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._option("crossfade", args["seconds"])

    def cmd_min_play(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._option("min_play", args["seconds"])

    def _generator_setting(self, key: str, value: Any) -> dict[str, Any]:
        gen = self.effective_config().generator
        if value is not None and value != getattr(gen, key):
            try:
                parse_config({"generator": {key: value}}, COMMAND_FOR_KEY[key])
            except ConfigError as exc:
                # "command: generator.model: expected one of ..., got ..."
                raise ProtocolError(protocol.BAD_ARGUMENT, str(exc)) from None
            if key == "backend" and value == "command" and not self.cfg.generator.command:
                raise ProtocolError(
                    protocol.BAD_ARGUMENT,
                    "generator: the command backend needs generator.command in the config",
                )
            previous = dict(self.settings.generator)
            self.settings.generator[key] = value
            self.settings.preset_keys.discard(key)
            try:
                self._apply_generator()
            except UserError as exc:
                self.settings.generator = previous
                raise ProtocolError(protocol.FAILED, str(exc)) from None
            self.schedule_save()
        gen = self.effective_config().generator
        return {"backend": gen.backend, "model": gen.model, "seconds": gen.seconds}

    def _apply_generator(self) -> None:
        gen = self.effective_config().generator
        self.producer.update_generator(gen)
        self.emit("generator", {"backend": gen.backend, "model": gen.model, "seconds": gen.seconds})

    def cmd_model(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._generator_setting("model", args["name"])

    def cmd_duration(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._generator_setting("seconds", args["seconds"])

    def cmd_generator(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._generator_setting("backend", args["name"])

    async def cmd_save(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.current is None:
            raise ProtocolError(protocol.NOT_READY, "save: nothing is playing yet")
        entry, audio = self.current
        music = Path(self.cfg.library.music_dir)
        dest = resolve_save_path(music, args["path"], entry)
        force = bool(args["force"])
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

    def cmd_queue(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"entries": [_entry_json(e) for e in self.producer.ready()]}

    def cmd_history(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"entries": list(self.history)}

    def cmd_library(self, args: dict[str, Any]) -> dict[str, Any]:
        limit = 20 if args["limit"] is None else args["limit"]
        entries = sorted(self.library.entries(), key=lambda e: e.created, reverse=True)
        size = self.library.size_bytes()
        return {
            "loops": len(entries),
            "mb": round(size / 1e6, 1),
            "max_mb": self.cfg.library.max_mb,
            "dir": str(self.cfg.library.dir),
            "entries": [_entry_json(e) for e in entries[:limit]],
        }

    async def cmd_reload(self, _args: dict[str, Any]) -> dict[str, Any]:
        return await self.reload()

    def cmd_events(self, args: dict[str, Any]) -> dict[str, Any]:
        since = args["since"] or 0
        return {"events": self.control.events_since(since), "last_seq": self.control.last_seq}

    def cmd_ping(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "pid": os.getpid()}

    def cmd_version(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"version": __version__, "protocol": protocol.VERSION}

    def cmd_help(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            "commands": {
                c.name: {"help": c.help, "args": [a.name for a in c.args]}
                for c in self.control.commands.values()
            }
        }


# --- helpers ----------------------------------------------------------------------------


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
    """Where `save` writes: inside the music dir, .wav or .flac; ProtocolError otherwise."""
    if not given:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        given = f"{stamp}-{_slug(entry.prompt)}-{entry.id[:8]}.flac"
    candidate = Path(os.path.expanduser(given))
    if not candidate.is_absolute():
        candidate = music_dir / candidate
    root = music_dir.resolve()
    dest = candidate.resolve()  # follows symlinks and .., so the check below is honest
    if dest != root and root not in dest.parents:
        raise ProtocolError(
            protocol.BAD_ARGUMENT, f"save: {given}: must be inside the music dir {music_dir}"
        )
    if dest.suffix.lower() not in SAVE_EXTENSIONS:
        raise ProtocolError(
            protocol.BAD_ARGUMENT, f"save: {given}: expected a .wav or .flac file name"
        )
    return dest


def write_loop_file(dest: Path, audio: Any, rate: int, meta: dict[str, Any], force: bool) -> None:
    """Write the loop and its JSON sidecar atomically; never overwrite unless `force`."""

    sidecar = dest.with_suffix(".json")
    if not force:
        for path in (dest, sidecar):
            if path.exists():
                raise ProtocolError(
                    protocol.EXISTS, f"save: {path} exists (use --force to overwrite)"
                )
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
        raise ProtocolError(protocol.EXISTS, f"save: {dest} exists (use --force)") from None
    except OSError as exc:
        for path in written:
            if path not in existed:
                path.unlink(missing_ok=True)
        raise ProtocolError(protocol.FAILED, f"save: {dest}: {exc.strerror or exc}") from None
