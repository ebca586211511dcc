"""The mixer: loop decks, equal-power crossfades and ramped master gain, in pure numpy.

Audio is float32, shape ``(frames, channels)``. A deck repeats its buffer by
indexing (the seam is baked into the loop by the analyzer), so wrapping never
restarts anything and never clicks. Every gain change (volume, pause, resume,
stop) is a linear ramp over a few milliseconds; crossfades follow sin/cos so
the summed power stays constant. A soft clipper after the master gain keeps
the output strictly inside full scale.

Transitions between loops are planned by `player.transitions` and scheduled at
a future frame of the playing deck (its next bar line); the block in which one
starts is split there, so it begins on the exact sample.

The mixer's clock counts the frames it has rendered (silence included), so it
cannot drift; events carry their position on it as ``at``. All per-block work is
vectorized into buffers allocated once for the largest block; rendering allocates
nothing but small views.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from infiniloopd.player.transitions import Grid, Plan, make_grid, plan_transition

PLAYING = "playing"
PAUSED = "paused"
STOPPED = "stopped"

# The soft clipper is the identity up to this level and bends smoothly above it,
# approaching but never reaching 1.0. About -1 dBFS, matching the loop peak ceiling.
CLIP_KNEE = 0.89
_BELOW_ONE = np.float32(np.nextafter(np.float32(1.0), np.float32(0.0)))
# More decks than this can only come from a burst of skips; the oldest are dropped
# (they are nearly silent by then) so memory stays bounded.
MAX_DECKS = 4


@dataclass
class Deck:
    """One loop being played: its buffer, where it is, and its gain envelope."""

    key: str
    audio: np.ndarray
    pos: int = 0
    repeats: int = 0
    played: int = 0  # frames rendered (audible or fading) since the deck started
    # Gain envelope: gain(t) = amp * sin(pi/2 * t) when fading in, amp * cos(pi/2 * t)
    # when fading out, with t = fade_pos / fade_len; constant `amp` when not fading.
    amp: float = 1.0
    fading: str = ""  # "" | "in" | "out"
    fade_pos: int = 0
    fade_len: int = 0
    started: bool = False  # loop_started already reported
    grid: Grid | None = None  # beat grid, for planning the transition out of this deck
    transition: bool = False  # fading in as the incoming deck of a planned transition
    # A variation source (player.variation.Brancher) or None: plain looping. With one,
    # the deck may jump at beat boundaries and `audio`/`pos` follow the loop it is in.
    variation: Any = None

    @property
    def frames(self) -> int:
        return int(self.audio.shape[0])

    def set_variation(self, source: Any) -> None:
        """Attach a variation source built for this deck's loop (None: plain looping).

        The source starts where the deck is; detaching keeps playing the loop the
        deck is in, from where it is.
        """
        if source is not None:
            source.attach(self.pos)
        self.variation = source

    def read_into(self, dst: np.ndarray, events: list, at: int = 0) -> None:
        """Fill dst with the deck's next len(dst) frames (before its gain envelope);
        `at` is the mixer's clock at dst[0] (the position of jump events)."""
        if self.variation is not None:
            # no jumps while crossfading with another loop: one change at a time
            self.variation.read(self, dst, events, at, jumps=not self.fading)
            return
        # Plain looping: wrap by indexing.
        n = dst.shape[0]
        done = 0
        length = self.frames
        while done < n:
            k = min(n - done, length - self.pos)
            dst[done : done + k] = self.audio[self.pos : self.pos + k]
            done += k
            self.pos += k
            if self.pos >= length:
                self.pos = 0
                self.repeats += 1

    def gain_now(self) -> float:
        """The deck's gain at its current frame (used when a new fade interrupts this one)."""
        if not self.fading:
            return self.amp
        t = min(self.fade_pos / self.fade_len, 1.0)
        if self.fading == "in":
            return self.amp * math.sin(0.5 * math.pi * t)
        return self.amp * math.cos(0.5 * math.pi * t)


class Mixer:
    """Decks summed into float32 blocks, with ramped master gain and a soft clipper.

    Not thread-safe: one thread (the audio thread) owns it; others send it commands.
    """

    def __init__(
        self,
        rate: int,
        channels: int,
        max_block: int,
        *,
        volume: float = 1.0,
        ramp_ms: float = 20.0,
        fade_in_ms: float = 10.0,
    ) -> None:
        if rate <= 0 or channels <= 0 or max_block <= 0:
            raise ValueError("rate, channels and max_block must be positive")
        self.rate = rate
        self.channels = channels
        self.max_block = max_block
        self.ramp_frames = max(1, round(rate * ramp_ms / 1000.0))
        self.fade_in_frames = max(1, round(rate * fade_in_ms / 1000.0))
        self.decks: list[Deck] = []
        self.state = STOPPED
        self.volume = float(np.clip(volume, 0.0, 1.0))
        # Master gain: current value, target and per-frame step of the linear ramp.
        self.gain = 0.0
        self.gain_target = 0.0
        self.gain_step = 0.0
        self._stop_after_ramp = False
        self.events: list[tuple[str, dict]] = []
        self.clock = 0  # frames rendered since the mixer was made
        self.pending: tuple[Deck, Plan, str] | None = None  # (incoming, plan, outgoing key)
        # Scratch buffers, allocated once.
        self._ramp = np.arange(1, max_block + 1, dtype=np.float64)  # 1..n
        self._t = np.empty(max_block, dtype=np.float64)
        self._g = np.empty(max_block, dtype=np.float32)
        self._tmp = np.empty((max_block, channels), dtype=np.float32)
        self._tmp2 = np.empty((max_block, channels), dtype=np.float32)

    # --- commands ------------------------------------------------------------------

    def transition(
        self,
        key: str,
        audio: np.ndarray,
        crossfade: float,
        *,
        grid: dict | None = None,
        bpm: float | None = None,
    ) -> Plan | None:
        """Make `audio` the current loop at the next bar line of the playing loop.

        The incoming loop enters on its own downbeat at that bar line and the decks
        crossfade over whole bars (see `plan_transition`). With nothing audible it
        starts at once, from its downbeat. A transition asked for while another is
        still waiting replaces it. Returns the plan, or None when it started at once.
        """
        audio = self._check(audio)
        incoming = make_grid(grid, bpm, audio.shape[0], self.rate)
        playing = self.current
        if self.frozen or playing is None or self.state == STOPPED:
            # Nothing to keep time with (or only a stop's fade-out): start at once.
            self.play(key, audio, crossfade)
            deck = self.decks[-1]
            deck.grid, deck.pos = incoming, incoming.entry_point()
            return None
        pgrid = playing.grid or make_grid(None, None, playing.frames, self.rate)
        plan = plan_transition(
            pgrid,
            playing.pos,
            incoming,
            rate=self.rate,
            crossfade=crossfade,
            min_fade=self.fade_in_frames,
        )
        deck = Deck(key, audio, pos=plan.entry, grid=incoming)
        self.pending = (deck, plan, playing.key)
        return plan

    def play(
        self,
        key: str,
        audio: np.ndarray,
        crossfade: float,
        *,
        grid: dict | None = None,
        bpm: float | None = None,
    ) -> None:
        """Make `audio` the current loop now: equal-power crossfade of `crossfade` seconds.

        The incoming loop starts at its frame 0 (`grid`/`bpm` are kept for planning
        the transition out of it). When nothing is audible (no deck,
        or paused/stopped at zero gain) the old decks are dropped and the new one
        fades in over a few milliseconds instead.
        """
        audio = self._check(audio)
        self.pending = None
        # Even a "cut" is a short equal-power crossfade: a step would click.
        fade = max(self.fade_in_frames, round(crossfade * self.rate))
        if self.frozen or not self.decks:
            # Nothing audible to fade from. When the master gain ramps up from zero
            # (resume, or start from stopped) that ramp is the fade-in; otherwise
            # the new deck fades in over a few ms.
            self.decks.clear()
            if self.gain == 0.0 and self.gain_target == 0.0:
                self.decks.append(Deck(key, audio))
            else:
                self.decks.append(Deck(key, audio, fading="in", fade_len=self.fade_in_frames))
        else:
            outgoing = self.decks[-1].key
            for d in self.decks:
                g = d.gain_now()
                d.amp, d.fading, d.fade_pos, d.fade_len = g, "out", 0, fade
                if d.transition:  # cut short by this one
                    self.events.append(("transition_end", {"at": self.clock, "key": d.key}))
                    d.transition = False
            self.decks.append(Deck(key, audio, fading="in", fade_len=fade, transition=True))
            info = {"at": self.clock, "key": key, "from": outgoing, "entry": 0, "fade": fade}
            self.events.append(("transition_start", {**info, "bars": 0, "kind": "now"}))
            while len(self.decks) > MAX_DECKS:
                self.decks.pop(0)
        if grid is not None or bpm is not None:
            self.decks[-1].grid = make_grid(grid, bpm, audio.shape[0], self.rate)
        if self.state == STOPPED:
            self.state = PLAYING
            self._stop_after_ramp = False
            self._ramp_to(self.volume)

    def set_volume(self, volume: float) -> None:
        """Set the master volume (0..1); reached by a ramp."""
        self.volume = float(np.clip(volume, 0.0, 1.0))
        if self.state == PLAYING:
            self._ramp_to(self.volume)

    def pause(self) -> None:
        """Ramp to silence and then hold every deck where it is."""
        if self.state == PLAYING:
            self.state = PAUSED
            self._ramp_to(0.0)

    def resume(self) -> None:
        """Ramp back up from where the decks were held."""
        if self.state == PAUSED and self.decks:
            self.state = PLAYING
            self._ramp_to(self.volume)

    def stop(self, seconds: float | None = None) -> None:
        """Ramp to silence (over `seconds`, default the short ramp), then drop all decks."""
        self.pending = None
        if not self.decks:
            self.state = STOPPED
            self.gain = self.gain_target = self.gain_step = 0.0
            return
        frames = None if seconds is None else max(1, round(seconds * self.rate))
        self._ramp_to(0.0, frames)
        self.state = STOPPED
        self._stop_after_ramp = True

    def restart_from_silence(self) -> None:
        """The device ran dry (the audio thread stalled): what is rendered next follows
        silence, so the master gain ramps up from zero instead of stepping in."""
        if self.gain > 0.0:
            target = self.gain_target
            self.gain = 0.0
            self._ramp_to(target)

    @property
    def frozen(self) -> bool:
        """True when paused or stopped at zero gain: decks hold their position."""
        return self.state != PLAYING and self.gain == 0.0 and self.gain_target == 0.0

    @property
    def idle(self) -> bool:
        """True when rendering produces only silence and changes nothing."""
        return not self.decks or self.frozen

    @property
    def current(self) -> Deck | None:
        """The deck that is (becoming) current: the newest one."""
        return self.decks[-1] if self.decks else None

    @property
    def target(self) -> Deck | None:
        """The deck that will be current: the incoming one of a waiting transition, if any."""
        return self.pending[0] if self.pending is not None else self.current

    def frames_to_transition(self) -> int | None:
        """Frames until the waiting transition starts, or None."""
        return self.pending[1].wait if self.pending is not None else None

    # --- rendering -----------------------------------------------------------------

    def render(self, frames: int) -> np.ndarray:
        """Render `frames` frames into a new array (convenience for tests and offline use)."""
        out = np.empty((frames, self.channels), dtype=np.float32)
        self.render_into(out)
        return out

    def render_into(self, out: np.ndarray) -> None:
        """Render ``len(out)`` frames (at most max_block) into `out`, float32 (n, channels)."""
        n = out.shape[0]
        if n > self.max_block:
            raise ValueError(f"block of {n} frames exceeds max_block {self.max_block}")
        if self.pending is not None and not self.idle:
            deck, plan, _ = self.pending
            if plan.wait < n:
                # The transition starts inside this block: split it at the exact frame.
                if plan.wait > 0:
                    self._render_part(out[: plan.wait])
                self._start_pending()
                self._render_part(out[plan.wait :])
                return
            self.pending = (deck, dataclasses.replace(plan, wait=plan.wait - n), self.pending[2])
        self._render_part(out)

    def _render_part(self, out: np.ndarray) -> None:
        n = out.shape[0]
        if n == 0:
            return
        if self.idle:
            out.fill(0.0)
            if self._stop_after_ramp:
                self._finish_stop()
            self.clock += n
            return
        mix = out
        mix.fill(0.0)
        finished: list[Deck] = []
        for deck in self.decks:
            if self._render_deck(deck, mix, n):
                finished.append(deck)
        if finished:
            for deck in finished:
                self.decks.remove(deck)
            cur = self.current
            if cur is not None and len(self.decks) == 1:
                self.events.append(("crossfade_done", {"key": cur.key, "at": self.clock + n}))
        self._apply_master(mix, n)
        self._soft_clip(mix, n)
        self.clock += n
        if self.gain == 0.0 and self.gain_target == 0.0 and self._stop_after_ramp:
            self._finish_stop()

    def _start_pending(self) -> None:
        assert self.pending is not None
        deck, plan, outgoing = self.pending
        self.pending = None
        for d in self.decks:
            g = d.gain_now()
            d.amp, d.fading, d.fade_pos, d.fade_len = g, "out", 0, plan.fade
            if d.transition:  # cut short by this one
                self.events.append(("transition_end", {"at": self.clock, "key": d.key}))
                d.transition = False
        deck.fading, deck.fade_len, deck.transition = "in", plan.fade, True
        self.decks.append(deck)
        while len(self.decks) > MAX_DECKS:
            self.decks.pop(0)
        self.events.append(
            (
                "transition_start",
                {
                    "at": self.clock,
                    "key": deck.key,
                    "from": outgoing,
                    "entry": plan.entry,
                    "fade": plan.fade,
                    "bars": plan.bars,
                    "kind": plan.kind,
                },
            )
        )

    def _render_deck(self, deck: Deck, mix: np.ndarray, n: int) -> bool:
        """Add n frames of `deck` times its envelope to `mix`; True when it has faded out."""
        if not deck.started:
            deck.started = True
            self.events.append(("loop_started", {"key": deck.key, "at": self.clock}))
        src = self._tmp[:n]
        deck.read_into(src, self.events, self.clock)
        deck.played += n
        gone = False
        if deck.fading:
            t = self._t[:n]
            np.add(self._ramp[:n], deck.fade_pos - 1, out=t)
            np.multiply(t, 0.5 * math.pi / deck.fade_len, out=t)
            np.minimum(t, 0.5 * math.pi, out=t)
            if deck.fading == "in":
                np.sin(t, out=t)
            else:
                np.cos(t, out=t)
            g = self._g[:n]
            np.multiply(t, deck.amp, out=g, casting="same_kind")
            np.multiply(src, g[:, None], out=src)
            deck.fade_pos += n
            if deck.fade_pos >= deck.fade_len:
                if deck.fading == "out":
                    gone = True
                else:
                    if deck.transition:
                        end = self.clock + n - (deck.fade_pos - deck.fade_len)
                        self.events.append(("transition_end", {"at": end, "key": deck.key}))
                        deck.transition = False
                    deck.fading = ""
                    deck.fade_pos = deck.fade_len = 0
        elif deck.amp != 1.0:
            np.multiply(src, np.float32(deck.amp), out=src)
        np.add(mix, src, out=mix)
        return gone

    def _apply_master(self, mix: np.ndarray, n: int) -> None:
        if self.gain_step == 0.0:
            if self.gain != 1.0:
                np.multiply(mix, np.float32(self.gain), out=mix)
            return
        t = self._t[:n]
        np.multiply(self._ramp[:n], self.gain_step, out=t)
        np.add(t, self.gain, out=t)
        if self.gain_step > 0:
            np.minimum(t, self.gain_target, out=t)
        else:
            np.maximum(t, self.gain_target, out=t)
        g = self._g[:n]
        g[...] = t
        np.multiply(mix, g[:, None], out=mix)
        self.gain = float(t[n - 1])
        if self.gain == self.gain_target:
            self.gain_step = 0.0

    def _soft_clip(self, mix: np.ndarray, n: int) -> None:
        """Bend samples above CLIP_KNEE smoothly towards (never to) full scale."""
        a = self._tmp[:n]
        np.abs(mix, out=a)
        if float(a.max(initial=0.0)) <= CLIP_KNEE:
            return
        head = 1.0 - CLIP_KNEE
        # reduction = over - head * tanh(over / head), over = max(|x| - knee, 0);
        # y = x - sign(x) * reduction, i.e. |y| = knee + head * tanh(over / head).
        np.subtract(a, CLIP_KNEE, out=a)
        np.maximum(a, 0.0, out=a)
        b = self._tmp2[:n]
        np.multiply(a, 1.0 / head, out=b)
        np.tanh(b, out=b)
        np.multiply(b, head, out=b)
        np.subtract(a, b, out=a)
        np.copysign(a, mix, out=a)
        np.subtract(mix, a, out=mix)
        # tanh saturates to exactly 1.0 in float32 for far-out samples; keep strictly inside.
        np.clip(mix, -_BELOW_ONE, _BELOW_ONE, out=mix)

    # --- helpers -------------------------------------------------------------------

    def _ramp_to(self, target: float, frames: int | None = None) -> None:
        self.gain_target = target
        frames = self.ramp_frames if frames is None else frames
        self.gain_step = (target - self.gain) / frames if target != self.gain else 0.0

    def _finish_stop(self) -> None:
        self.decks.clear()
        self.pending = None
        self._stop_after_ramp = False
        self.state = STOPPED

    def _check(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio)
        if audio.ndim != 2 or audio.shape[1] != self.channels or audio.shape[0] < 1:
            raise ValueError(
                f"loop audio must be (frames, {self.channels}), got shape {audio.shape}"
            )
        return np.ascontiguousarray(audio, dtype=np.float32)
