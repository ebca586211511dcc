"""The analyzer worker: loop analysis in a separate, long-lived process.

librosa is slow to import and analysis is CPU-heavy; doing it in the daemon would
compete with the audio thread for the GIL and stall the control socket. The worker
is spawned once, warmed (imports and one analysis of a small synthetic clip) so the
first real clip does not pay start-up costs, and restarted if it dies. Requests go
over a multiprocessing pipe from an executor thread, so the event loop never blocks.
The loop comes back pickled through the pipe: a 30 s stereo loop at 48 kHz is
about 11 MB, which a local pipe moves in a few milliseconds, and it saves a temp
file and its cleanup. The event loop watches the worker's sentinel, so a worker that
dies while idle is replaced (and warmed) at once, not when the next clip arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from infiniloopd.errors import UserError

log = logging.getLogger(__name__)

# Analysis of a 30 s clip takes seconds; this much means the worker is stuck.
DEFAULT_TIMEOUT = 180.0


class AnalysisFailed(UserError):
    """A clip that could not be turned into a loop (or a worker that died on it)."""


class _WorkerDied(Exception):
    pass


@dataclass(frozen=True)
class _Params:
    rate: int
    channels: int
    target_lufs: float
    peak_ceiling_db: float
    min_loop: float
    max_loop: float | None


def _warm_clip(rate: int = 22050, seconds: float = 8.0) -> np.ndarray:
    """A small clip with a clear beat and harmony, enough to run every stage once."""
    t = np.arange(int(rate * seconds)) / rate
    beat = 0.5
    phase = (t % beat) / beat
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-phase * 12)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    return (0.5 * kick + 0.2 * chord).astype(np.float32)


def grid_hint(music: Any, seconds: float) -> Any:
    """The beat a generator wrote into its clip's facts (`tempo`, `beats_per_bar`,
    `downbeat` seconds), as an analysis GridHint; None when they are missing or absurd
    (then the beat is found from the audio, as for any generator)."""
    from infiniloopd.analysis import GridHint

    if not isinstance(music, dict):
        return None
    bpm, per_bar, down = music.get("tempo"), music.get("beats_per_bar"), music.get("downbeat")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (bpm, down))
    if not numbers or not isinstance(per_bar, int) or isinstance(per_bar, bool):
        return None
    if not (30.0 <= bpm <= 300.0 and 2 <= per_bar <= 12 and 0.0 <= down < seconds):
        return None
    return GridHint(float(bpm), per_bar, float(down))


def _serve(conn: Connection, params: _Params) -> None:
    """The worker process: answer requests until the pipe closes."""
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(5)  # below the daemon (and its audio thread), above the generator
    from infiniloopd.analysis import AnalysisError, analyse_clip
    from infiniloopd.audiofile import read_audio
    from infiniloopd.generators.synth.facts import read_music

    def analyse(y: np.ndarray, sr: int, hint: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        loop, points, info = analyse_clip(
            y,
            sr,
            out_rate=params.rate,
            out_channels=params.channels,
            target_lufs=params.target_lufs,
            peak_ceiling_db=params.peak_ceiling_db,
            min_seconds=params.min_loop,
            max_seconds=params.max_loop,
            hint=hint,
        )
        info = dict(info)
        info.update(
            start=int(points.start),
            end=int(points.end),
            loudness_lufs=info.get("loudness_out"),
            source_seconds=info.get("input_seconds"),
        )
        return loop, info

    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "exit":
            return
        try:
            if kind == "warm":
                t0 = time.perf_counter()
                try:
                    analyse(_warm_clip(), 22050)
                except AnalysisError as exc:
                    log.warning("analyzer warm-up: %s", exc)
                conn.send(("ok", None, {"warm_s": time.perf_counter() - t0}))
            elif kind == "analyse":
                try:
                    y, sr = read_audio(Path(payload))
                except UserError as exc:
                    conn.send(("fail", str(exc), {}))
                    continue
                try:
                    loop, info = analyse(y, sr, grid_hint(read_music(Path(payload)), len(y) / sr))
                except AnalysisError as exc:
                    conn.send(("fail", str(exc), {}))
                    continue
                conn.send(("ok", loop, info))
            else:
                conn.send(("bug", f"unknown request {kind!r}", {}))
        except (BrokenPipeError, EOFError):
            return
        except Exception:  # a bug in analysis: report it, keep serving
            conn.send(("bug", traceback.format_exc(), {}))


class AnalyzerWorker:
    """Runs the loop engine in a separate process on clips written by generators."""

    def __init__(
        self,
        *,
        rate: int,
        channels: int,
        target_lufs: float,
        peak_ceiling_db: float,
        min_loop: float,
        max_loop: float | None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.rate = rate
        self.channels = channels
        self.timeout = timeout
        self._params = _Params(rate, channels, target_lufs, peak_ceiling_db, min_loop, max_loop)
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future[Any] | None = None
        self.restarts = 0
        self.warm_seconds: float | None = None
        self._closing = False
        self._dead: multiprocessing.process.BaseProcess | None = None  # known to have ended
        self._revival: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        alive = proc is not None and proc is not self._dead and proc.is_alive()
        return proc.pid if alive else None

    # --- process management ------------------------------------------------------------

    def _spawn(self) -> None:
        self._reap()
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_serve, args=(child, self._params), name="infiniloop-analyzer", daemon=True
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        log.info("analyzer worker started (pid %d)", proc.pid)

    def _reap(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(5)

    async def _respawn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Replace the worker (in an executor thread) and watch the new one."""
        await loop.run_in_executor(None, self._spawn)
        proc = self._proc
        if proc is not None:
            # A thread blocked in waitpid() learns of the exit whatever happens to the
            # process's pipes (a sentinel fd can stay open in a grandchild that inherited
            # it, and then never becomes readable).
            threading.Thread(
                target=self._watch, args=(loop, proc), name="analyzer-watch", daemon=True
            ).start()

    def _watch(self, loop: asyncio.AbstractEventLoop, proc: Any) -> None:
        """Watcher thread: wait for `proc` to end, then tell the event loop."""
        with contextlib.suppress(Exception):
            proc.join()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            loop.call_soon_threadsafe(self._on_exit, proc)

    def _on_exit(self, proc: multiprocessing.process.BaseProcess) -> None:
        """A worker ended (event loop thread): revive it unless closing or replaced."""
        if self._closing or proc is not self._proc:
            return
        self._dead = proc
        if self._revival is None or self._revival.done():
            self._revival = asyncio.get_running_loop().create_task(self._revive())

    async def _revive(self) -> None:
        try:
            await self._request(("warm", None), self.timeout, only_if_dead=True)
        except _WorkerDied as exc:
            log.warning("analyzer worker could not be restarted: %s", exc)
        except Exception:  # never let the watcher's task die unseen
            log.exception("analyzer worker restart failed")

    def _roundtrip(self, message: tuple[str, Any], timeout: float) -> tuple[str, Any, dict]:
        """Send one request and wait for its reply (runs in an executor thread)."""
        conn, proc = self._conn, self._proc
        if conn is None or proc is None:
            raise _WorkerDied("not running")
        try:
            conn.send(message)
            if not conn.poll(timeout):
                proc.kill()
                raise _WorkerDied(f"no answer after {timeout:g} s; killed it")
            return conn.recv()
        except (EOFError, OSError) as exc:
            proc.join(1)
            code = proc.exitcode
            raise _WorkerDied(
                f"it died ({_exit_text(code)})" if code is not None else f"pipe failed: {exc}"
            ) from None

    async def _request(
        self, message: tuple[str, Any], timeout: float, *, only_if_dead: bool = False
    ) -> tuple[str, Any, dict] | None:
        """One request, (re)starting the worker first if it is not running.

        With `only_if_dead`, a worker found alive (someone else replaced it while we
        waited for the lock) is left alone and None is returned.
        """
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._inflight is not None:
                # A cancelled caller's request is still on the pipe; let it finish first.
                with contextlib.suppress(Exception):
                    await asyncio.wait([self._inflight])
                self._inflight = None
            if self._closing:
                raise _WorkerDied("closing")
            proc = self._proc
            alive = proc is not None and proc is not self._dead and proc.is_alive()
            if alive and only_if_dead:
                return None
            if not alive:
                if self._proc is not None:
                    log.warning(
                        "analyzer worker gone (%s); restarting", _exit_text(self._proc.exitcode)
                    )
                    self.restarts += 1
                await self._respawn(loop)
            fut = loop.run_in_executor(None, self._roundtrip, message, timeout)
            self._inflight = fut
            try:
                result = await asyncio.shield(fut)
            except _WorkerDied:
                self._inflight = None
                self.restarts += 1
                if not self._closing:
                    await self._respawn(loop)
                raise
            self._inflight = None
            return result

    # --- the interface -----------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the worker and warm it with one analysis of a synthetic clip."""
        t0 = time.monotonic()
        try:
            status, payload, info = await self._request(("warm", None), self.timeout)
        except _WorkerDied as exc:
            raise AnalysisFailed(f"analyzer worker failed to start: {exc}") from None
        if status != "ok":
            log.error("analyzer warm-up failed: %s", _first_line(payload))
        self.warm_seconds = time.monotonic() - t0
        log.info(
            "analyzer worker ready in %.1f s (warm analysis %.2f s)",
            self.warm_seconds,
            info.get("warm_s", 0.0),
        )

    async def analyse(self, clip: Path) -> tuple[np.ndarray, dict]:
        """The loop cut from `clip`: float32 (frames, channels) at `rate`, and its facts."""
        t0 = time.monotonic()
        try:
            status, payload, info = await self._request(("analyse", str(clip)), self.timeout)
        except _WorkerDied as exc:
            raise AnalysisFailed(
                f"analyzer: worker lost while analysing {clip.name}: {exc}; restarted it"
            ) from None
        if status == "fail":
            raise AnalysisFailed(f"analyzer: {clip.name}: {payload}")
        if status == "bug":
            log.error("analyzer: bug while analysing %s:\n%s", clip.name, payload)
            raise AnalysisFailed(f"analyzer: {clip.name}: internal error: {_last_line(payload)}")
        info["roundtrip_s"] = time.monotonic() - t0
        return payload, info

    async def close(self) -> None:
        """Ask the worker to exit; kill it if it does not."""
        self._closing = True
        if self._revival is not None and not self._revival.done():
            self._revival.cancel()
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        if conn is not None and proc.is_alive() and not self._lock.locked():
            with contextlib.suppress(OSError):
                conn.send(("exit", None))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, proc.join, 3)
        await loop.run_in_executor(None, self._reap)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _first_line(text: Any) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def _last_line(text: Any) -> str:
    return str(text).strip().splitlines()[-1] if str(text).strip() else ""
