"""The player: an audio thread that renders the mixer block by block into an output.

Other threads talk to it only through a `queue.SimpleQueue` of commands, applied at
block boundaries, and read it only through `status()`, a snapshot the audio thread
publishes by plain attribute assignment. No lock is shared with anyone, so nothing
the main thread does can stall the audio.

The audio thread never dies silently: an output failure starts an "episode" that is
logged once, reported as ``output_error``, and retried with backoff while commands
keep being served; the mixer does not advance meanwhile, so the position is kept.
Any other exception is logged with its traceback and the loop goes on.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from infiniloopd.outputs.base import Output
from infiniloopd.player.mixer import PAUSED, PLAYING, STOPPED, Mixer

log = logging.getLogger(__name__)

BACKOFF_START = 0.25
# A pause between writes this much longer than the device's buffer means it ran dry.
STALL_MARGIN = 0.05
# Silence written after such a stall, before the fade-in (see _check_stall).
STALL_PAD_SECONDS = 0.06
BACKOFF_MAX = 5.0


@dataclass
class PlayerStatus:
    state: str  # "playing" | "paused" | "stopped"
    key: str | None  # key of the loop that is (becoming) current
    position: float  # seconds into the current loop (0 <= position < loop_seconds)
    loop_seconds: float
    repeats: int  # completed wraps of the current loop
    played: float  # seconds the current loop has been audible since it started
    crossfading: bool
    volume: float  # 0..1 target
    output: str  # Output.describe()
    heartbeat: float  # time.monotonic() of the audio thread's last loop iteration
    output_ok: bool  # False while the output is failing / reconnecting
    xruns: int  # underruns the output itself reported (ALSA)
    stalls: int  # times the audio thread was held up until the device ran dry


@dataclass(frozen=True)
class _Snapshot:
    """What the audio thread publishes after each block (replaced whole, never mutated)."""

    seq: int
    state: str
    key: str | None
    position: float
    loop_seconds: float
    repeats: int
    played: float
    crossfading: bool
    volume: float


class Player:
    """Plays loops gaplessly with crossfades through one `Output`, on its own thread."""

    def __init__(
        self,
        output: Output,
        *,
        rate: int,
        channels: int,
        block_ms: float = 20.0,
        volume: float = 0.8,
        on_event: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.rate = rate
        self.channels = channels
        self.block = max(16, round(rate * block_ms / 1000.0))
        self.on_event = on_event
        self._output = output
        self._output_desc = _describe(output)
        self._mixer = Mixer(rate, channels, self.block, volume=volume)
        self._buf = np.zeros((self.block, channels), dtype=np.float32)
        self._commands: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._opened = False
        self._output_ok = False
        self._failing_since: float | None = None
        self._backoff = BACKOFF_START
        self._retry_at = 0.0
        self._heartbeat = time.monotonic()
        self._written_at: float | None = None  # when the last write returned
        self._written_frames = 0  # since the output was opened
        self._stalls = 0
        self._pad_blocks = 0  # blocks of silence still to write before the fade-in
        self._last_stall_log = -np.inf
        self._last_bug = ""
        self._last_bug_at = 0.0
        self._fade_waiters: list[threading.Event] = []
        # Commands are numbered so status() can answer for commands not yet applied.
        self._seq_lock = threading.Lock()  # only guards the counter, held for nanoseconds
        self._sent = 0
        self._applied = 0
        self._predicted: dict[str, Any] = {}
        self._snap = _Snapshot(0, STOPPED, None, 0.0, 0.0, 0, 0.0, False, self._mixer.volume)

    # --- public API (any thread) ---------------------------------------------------

    def start(self, *, retry: bool = False) -> None:
        """Open the output and start the audio thread.

        An output that cannot open raises (a UserError with a one-line message), unless
        `retry` is true: then the thread starts anyway and keeps retrying with backoff.
        """
        if self._thread is not None:
            raise RuntimeError("player already started")
        try:
            self._output.open(self.rate, self.channels)
            self._opened = True
            self._output_ok = True
            self._output_desc = _describe(self._output)
        except Exception as exc:
            if not retry:
                raise
            self._fail(exc)
        self._thread = threading.Thread(target=self._run, name="infiniloop-audio", daemon=True)
        self._thread.start()

    def play_loop(
        self,
        key: str,
        audio: np.ndarray,
        crossfade: float,
        *,
        grid: dict | None = None,
        bpm: float | None = None,
        align: bool | None = None,
    ) -> None:
        """Make `audio` (float32 (frames, channels) at the player rate) the current loop.

        With `align` (default: when a `grid` or `bpm` is given) the loop comes in at the
        next bar line of the playing loop, on its own downbeat, crossfading over whole
        bars (`Mixer.transition`); otherwise the crossfade starts at once.
        """
        if align is None:
            align = grid is not None or bpm is not None
        audio = np.asarray(audio)
        if audio.ndim != 2 or audio.shape[1] != self.channels or audio.shape[0] == 0:
            raise ValueError(f"loop audio must be (frames, {self.channels}), got {audio.shape}")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        state = self._predict("state")
        self._send(
            ("play", key, audio, float(crossfade), grid, bpm, bool(align)),
            key=key,
            state=PLAYING if state == STOPPED else state,
            loop_seconds=audio.shape[0] / self.rate,
        )

    def set_variation(self, key: str, source: Any) -> None:
        """Give the deck playing `key` a variation source (player.variation.Brancher),
        built off this thread; None returns it to plain looping."""
        self._send(("variation", key, source))

    def set_volume(self, volume: float) -> None:
        """Set the volume (0..1), reached by a short ramp."""
        volume = min(1.0, max(0.0, float(volume)))
        self._send(("volume", volume), volume=volume)

    def pause(self) -> None:
        """Ramp to silence and hold the position."""
        state = self._predict("state")
        self._send(("pause",), state=PAUSED if state == PLAYING else state)

    def resume(self) -> None:
        """Ramp back up from the held position."""
        state = self._predict("state")
        has_loop = self._predict("key") is not None
        self._send(("resume",), state=PLAYING if state == PAUSED and has_loop else state)

    def stop(self, seconds: float | None = None) -> None:
        """Ramp to silence (over `seconds`, default a short ramp) and drop the loop."""
        self._send(("stop", seconds), state=STOPPED, key=None)

    def fade_out(self, seconds: float = 0.3) -> None:
        """Fade to silence over `seconds` and drop the loop; blocks until done (SIGTERM path)."""
        done = threading.Event()
        self._send(("fade_out", float(seconds), done), state=STOPPED, key=None)
        if self._thread is None or not self._thread.is_alive():
            return
        if not done.wait(seconds + 2.0):
            log.warning("fade-out did not complete within %.1f s", seconds + 2.0)

    def replace_output(self, output: Output) -> None:
        """Switch to another output at the next block boundary, keeping the position."""
        if self._thread is None:
            self._output = output
            self._output_desc = _describe(output)
            return
        self._send(("output", output))

    def status(self) -> PlayerStatus:
        """A consistent snapshot; reflects commands already sent even if not yet applied."""
        snap = self._snap
        pending = snap.seq < self._sent
        pred = self._predicted if pending else {}
        key = pred.get("key", snap.key)
        switched = pending and "loop_seconds" in pred and key is not None
        output = self._output
        return PlayerStatus(
            state=pred.get("state", snap.state),
            key=key,
            position=0.0 if switched or key is None else snap.position,
            loop_seconds=pred["loop_seconds"] if switched else (snap.loop_seconds if key else 0.0),
            repeats=0 if switched or key is None else snap.repeats,
            played=0.0 if switched or key is None else snap.played,
            crossfading=snap.crossfading or (switched and snap.key is not None),
            volume=pred.get("volume", snap.volume),
            output=self._output_desc,
            heartbeat=self._heartbeat,
            output_ok=self._output_ok,
            xruns=int(getattr(output, "xruns", 0)),
            stalls=self._stalls,
        )

    def render(self, frames: int) -> None:
        """Render `frames` frames into the output on the calling thread, unpaced.

        Offline rendering (`infiniloopd record`): the player is never started; the
        caller drives it, and commands, events and status work as with the thread.
        """
        if self._thread is not None:
            raise RuntimeError("render() is for a player that was not started")
        if not self._opened:
            self._output.open(self.rate, self.channels)
            self._opened = self._output_ok = True
        mixer = self._mixer
        done = 0
        while done < frames:
            self._apply_commands(block=False, timeout=0.0)
            n = min(self.block, frames - done)
            buf = self._buf[:n]
            mixer.render_into(buf)
            self._output.write(buf)
            done += n
            self._written_frames += n
            self._block_written()

    @property
    def alive(self) -> bool:
        """True while the audio thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the audio thread and close the output."""
        self._commands.put((None, "close"))
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("audio thread did not stop within %.1f s (output blocked?)", timeout)
                return
        self._close_output()

    # --- helpers for the API -------------------------------------------------------

    def _predict(self, name: str) -> Any:
        if self._snap.seq < self._sent and name in self._predicted:
            return self._predicted[name]
        return getattr(self._snap, name)

    def _send(self, command: tuple[Any, ...], **predicted: Any) -> None:
        with self._seq_lock:
            self._sent += 1
            seq = self._sent
            if self._snap.seq >= seq - 1:
                self._predicted = {}
            self._predicted = {**self._predicted, **predicted}
            self._commands.put((seq, *command))

    # --- the audio thread ----------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                try:
                    self._iteration()
                except Exception as exc:
                    # A bug, not an output failure: keep the audio going, but say so loudly
                    # (with a traceback the first time, then at most once a minute).
                    self._bug(exc)
                    time.sleep(0.1)
        except BaseException:
            log.critical("audio thread stopped by an unrecoverable error", exc_info=True)
            raise
        finally:
            for ev in self._fade_waiters:
                ev.set()
            self._fade_waiters.clear()

    def _bug(self, exc: Exception) -> None:
        now = time.monotonic()
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_bug or now - self._last_bug_at > 60.0:
            log.error("audio thread: unexpected error (continuing)", exc_info=exc)
            self._last_bug, self._last_bug_at = text, now

    def _iteration(self) -> None:
        self._heartbeat = time.monotonic()
        self._apply_commands(block=False, timeout=0.0)
        if self._closing:
            return
        if not self._output_ok:
            self._retry_output()
            return
        mixer = self._mixer
        paced = getattr(self._output, "paced", True)
        if mixer.idle and not paced:
            # Nothing to play and an output that would not block: wait for a command.
            self._apply_commands(block=True, timeout=self.block / self.rate)
            self._publish()
            self._release_fade_waiters()
            return
        self._check_stall(self._heartbeat)
        if self._pad_blocks > 0:
            # Silence first: a server that ran dry drops the start of what comes next.
            self._pad_blocks -= 1
            self._buf.fill(0.0)
        else:
            mixer.render_into(self._buf)
        try:
            self._output.write(self._buf)
        except Exception as exc:
            self._fail(exc)
            return
        now = time.monotonic()
        if self._check_stall(now, since=self._heartbeat):
            # Held up inside the write: the rest of this block is queued to start the
            # sound after the silence. Drop it; the next block ramps in.
            discard = getattr(self._output, "discard", None)
            if discard is not None:
                discard()
            now = time.monotonic()
        self._written_at = now
        self._written_frames += len(self._buf)
        self._block_written()
        self._release_fade_waiters()

    def _block_written(self) -> None:
        """After a block reached the output: report the mixer's events, publish status."""
        mixer = self._mixer
        if mixer.events:
            events, mixer.events = mixer.events, []
            for name, data in events:
                self._emit(name, data)
        self._publish()

    def _check_stall(self, now: float, since: float | None = None) -> bool:
        """Fade back in if this thread was held up longer than the device's buffer.

        A stopped process (SIGSTOP, a frozen VM), a swap storm or a long GIL hold lets
        the device run dry: it cut the sound off, and what comes next would start
        mid-waveform after the silence, a click. The mixer ramps it in instead.
        `since` is when the held-up step began (default: when the last write returned).
        """
        limit = getattr(self._output, "buffer_seconds", None)
        since = self._written_at if since is None else since
        if limit is None or since is None:
            return False
        if self._written_frames < 2 * limit * self.rate:
            # Not yet playing steadily: a server may hold the first writes while its
            # sink wakes up (a null sink: up to 2 s). Nothing has run dry.
            return False
        gap = now - since
        if gap <= limit + STALL_MARGIN:
            return False
        self._stalls += 1
        self._mixer.restart_from_silence()
        # PulseAudio skips up to a few tens of ms of what arrives after it ran dry; the
        # fade-in must not be in that part.
        self._pad_blocks = max(1, math.ceil(STALL_PAD_SECONDS * self.rate / self.block))
        if now - self._last_stall_log > 60.0:
            self._last_stall_log = now
            log.warning(
                "audio thread held up %.2f s (the output holds %.2f s): it ran dry; fading back in",
                gap,
                limit,
            )
        return True

    def _apply_commands(self, *, block: bool, timeout: float) -> None:
        """Apply queued commands; optionally wait up to `timeout` for the first one."""
        first = True
        while True:
            try:
                if block and first:
                    cmd = self._commands.get(timeout=timeout)
                else:
                    cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            first = False
            self._apply(cmd)
            if self._closing:
                return

    def _apply(self, cmd: tuple[Any, ...]) -> None:
        seq, name, *args = cmd
        mixer = self._mixer
        if name == "play":
            key, audio, crossfade, grid, bpm, align = args
            if align:
                mixer.transition(key, audio, crossfade, grid=grid, bpm=bpm)
            else:
                mixer.play(key, audio, crossfade, grid=grid, bpm=bpm)
        elif name == "variation":
            key, source = args
            # the newest deck of that loop (a loop played twice in a row has two), or
            # the one waiting for its bar line
            decks = list(mixer.decks) + ([mixer.pending[0]] if mixer.pending is not None else [])
            deck = next((d for d in reversed(decks) if d.key == key), None)
            if deck is not None:
                deck.set_variation(source)
        elif name == "volume":
            mixer.set_volume(args[0])
        elif name == "pause":
            mixer.pause()
        elif name == "resume":
            mixer.resume()
        elif name == "stop":
            mixer.stop(args[0])
        elif name == "fade_out":
            seconds, done = args
            mixer.stop(seconds)
            if self._output_ok:
                self._fade_waiters.append(done)
            else:  # nothing is audible through a failed output: done already
                done.set()
        elif name == "output":
            self._switch_output(args[0])
        elif name == "close":
            self._closing = True
        if isinstance(seq, int):
            self._applied = seq
            self._publish(seq)

    def _publish(self, seq: int | None = None) -> None:
        mixer = self._mixer
        deck = mixer.target  # a loop waiting for its bar line is already "the" loop
        if seq is None:
            seq = self._applied
        if deck is None:
            snap = _Snapshot(seq, mixer.state, None, 0.0, 0.0, 0, 0.0, False, mixer.volume)
        else:
            snap = _Snapshot(
                seq,
                mixer.state,
                deck.key,
                deck.pos / self.rate,
                deck.frames / self.rate,
                deck.repeats,
                deck.played / self.rate,
                len(mixer.decks) > 1 or mixer.pending is not None,
                mixer.volume,
            )
        self._snap = snap

    def _release_fade_waiters(self) -> None:
        if self._fade_waiters and (self._mixer.idle or not self._output_ok):
            for ev in self._fade_waiters:
                ev.set()
            self._fade_waiters.clear()

    def _emit(self, name: str, data: dict) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(name, data)
        except Exception:
            log.exception("player event handler failed for %s", name)

    # --- output failures -----------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        """Start (or continue) a failure episode: close, log once, schedule a retry."""
        now = time.monotonic()
        message = str(exc) or type(exc).__name__
        first = self._failing_since is None
        self._output_ok = False
        self._close_output()
        if first:
            self._failing_since = now
            self._backoff = BACKOFF_START
            log.warning("output failed: %s (retrying)", message)
            self._emit("output_error", {"message": message})
        else:
            log.debug("output still failing: %s", message)
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        self._retry_at = now + self._backoff
        # Fading out into a dead output is done by definition.
        for ev in self._fade_waiters:
            ev.set()
        self._fade_waiters.clear()

    def _retry_output(self) -> None:
        """Wait (serving commands) until the retry time, then try to reopen the output."""
        while not self._closing:
            now = time.monotonic()
            self._heartbeat = now
            if now >= self._retry_at:
                break
            self._apply_commands(block=True, timeout=min(0.1, self._retry_at - now))
            if self._output_ok:  # a replace_output succeeded meanwhile
                return
        if self._closing:
            return
        try:
            self._output.open(self.rate, self.channels)
        except Exception as exc:
            self._fail(exc)
            return
        self._opened = True
        self._recovered()

    def _recovered(self) -> None:
        self._output_ok = True
        self._output_desc = _describe(self._output)
        if self._failing_since is not None:
            down = time.monotonic() - self._failing_since
            log.info("output recovered after %.1f s: %s", down, self._output_desc)
            self._failing_since = None
            self._emit("output_recovered", {"output": self._output_desc})
        self._backoff = BACKOFF_START

    def _switch_output(self, output: Output) -> None:
        self._close_output()
        self._output = output
        self._output_desc = _describe(output)
        try:
            output.open(self.rate, self.channels)
        except Exception as exc:
            self._failing_since = None  # a new output starts a new episode
            self._fail(exc)
            return
        self._opened = True
        self._recovered()

    def _close_output(self) -> None:
        self._written_at = None
        self._written_frames = 0
        if not self._opened:
            return
        self._opened = False
        try:
            self._output.close()
        except Exception as exc:
            log.debug("closing output failed: %s", exc)


def _describe(output: Output) -> str:
    try:
        return output.describe()
    except Exception as exc:
        return f"{getattr(output, 'name', 'output')}: ({exc})"
