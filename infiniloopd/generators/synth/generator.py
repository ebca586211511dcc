"""The built-in `synth` generator: composer -> FluidSynth (or numpy) -> finishing fx -> WAV."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import signal

from infiniloopd.atomic import write_audio_atomic, write_json_atomic
from infiniloopd.errors import UserError

from . import fx, render_numpy
from .composer import Score, compose, normalize_prompt, stable_hash
from .constants import DEFAULT_SOUNDFONTS, INSTALL_HINT, SR
from .facts import music_path
from .render_fluid import FluidRenderer

log = logging.getLogger(__name__)


class SynthGenerator:
    """Procedural music from a prompt, rendered with a General MIDI SoundFont.

    `soundfont` None searches `search` (Debian's SoundFonts); when none is found, or
    FluidSynth cannot be loaded, it renders with plain numpy instead and says so in one
    warning. The SoundFont is loaded lazily (in the worker thread of the first clip) or
    by `load()`.
    """

    name = "synth"
    rate = SR

    def __init__(
        self, soundfont: Path | None = None, *, search: Sequence[Path] = DEFAULT_SOUNDFONTS
    ) -> None:
        self._searched = tuple(search)
        if soundfont is not None:
            soundfont = Path(soundfont).expanduser()
            if not soundfont.is_file():
                raise UserError(f"generator.soundfont: no such file: {soundfont}")
            self._explicit = True
            self._soundfont: Path | None = soundfont
        else:
            self._explicit = False
            self._soundfont = next((p for p in search if p.is_file()), None)
        self._lock = threading.Lock()
        self._fluid: FluidRenderer | None = None
        self._loaded = False
        self._clips: dict[str, int] = {}  # clips made per prompt: where each piece is

    @property
    def model(self) -> str:
        """The SoundFont's stem, or "numpy" for the fallback synthesizer."""
        return self._soundfont.stem if self._soundfont is not None else "numpy"

    @property
    def soundfont(self) -> Path | None:
        return self._soundfont

    def load(self) -> None:
        """Load FluidSynth and the SoundFont now, or settle on numpy (warns once)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self._soundfont is None:
                where = ", ".join(str(p) for p in self._searched) or "nowhere"
                log.warning(
                    "synth: no General MIDI SoundFont found (looked for %s); using "
                    "the plain numpy synthesizer; for real instruments: %s",
                    where,
                    INSTALL_HINT,
                )
                return
            try:
                self._fluid = FluidRenderer(self._soundfont, SR)
            except (ImportError, OSError) as e:
                log.warning(
                    "synth: FluidSynth unavailable (%s); using the plain numpy "
                    "synthesizer; for real instruments: apt-get install "
                    "libfluidsynth3 fluid-soundfont-gm and pip install pyfluidsynth",
                    str(e).splitlines()[0] if str(e) else type(e).__name__,
                )
                self._soundfont = None
            except RuntimeError as e:
                if self._explicit:
                    raise UserError(
                        f"generator.soundfont: FluidSynth cannot load {self._soundfont}"
                    ) from e
                log.warning(
                    "synth: %s; using the plain numpy synthesizer; try: %s", e, INSTALL_HINT
                )
                self._soundfont = None

    def close(self) -> None:
        with self._lock:
            if self._fluid is not None:
                self._fluid.close()
                self._fluid = None
            self._loaded = False

    def compose(self, prompt: str, seconds: float, seed: int, clip: int | None = None) -> Score:
        """The score a clip is rendered from (what the music claims to be)."""
        return compose(prompt, seconds, seed, clip)

    def next_clip(self, prompt: str) -> int:
        """The next clip index of a prompt's piece (0, 1, 2, ... per prompt)."""
        key = normalize_prompt(prompt)
        self._clips[key] = self._clips.get(key, -1) + 1
        return self._clips[key]

    def render(
        self,
        prompt: str,
        seconds: float,
        seed: int,
        sr: int = SR,
        report: Callable[[float], None] | None = None,
        *,
        clip: int | None = None,
    ) -> np.ndarray:
        """Render one clip: mono float32, exactly round(seconds * sr) samples.

        `clip` is the clip's place in the prompt's piece (None: derived from the seed).
        """
        if not (isinstance(seconds, int | float) and 0 < seconds <= 600):
            raise UserError(
                f"generator.seconds: expected seconds between 0 and 600, got {seconds!r}"
            )
        self.load()
        frames = int(round(seconds * sr))
        score = compose(prompt, seconds, seed, clip)
        if report:
            report(0.1)
        rng = np.random.default_rng(
            [stable_hash(normalize_prompt(prompt)) & 0xFFFFFFFF, seed & 0xFFFFFFFF, 2]
        )
        pre = int(round(score.preroll * sr))
        whole = score.from_preroll()  # the pre-roll is rendered, then cut after the reverb
        total = frames + pre
        if self._fluid is not None:
            native = int(round(whole.seconds * self._fluid.sr))
            dry = self._fluid.render(whole, native)
            if sr != self._fluid.sr:
                dry = signal.resample_poly(dry, sr, self._fluid.sr).astype(np.float32)
            dry = np.pad(dry, (0, max(total - len(dry), 0)))[:total]
        else:
            dry = render_numpy.render(whole, total, sr, rng)
        if report:
            report(0.6)
        out = fx.finish(dry, sr, score.fx, rng, preroll=pre)
        if report:
            report(0.85)
        return out

    async def generate(
        self,
        prompt: str,
        seconds: float,
        out: Path,
        progress: Callable[[float], None],
        *,
        seed: int,
    ) -> Path:
        """Write a 32 kHz mono float WAV of `seconds` to `out` (atomically); return `out`."""
        loop = asyncio.get_running_loop()

        def report(fraction: float) -> None:
            loop.call_soon_threadsafe(progress, fraction)

        progress(0.0)
        clip = self.next_clip(prompt)

        def make() -> np.ndarray:
            audio = self.render(prompt, seconds, seed, SR, report, clip=clip)
            write_music(out, self.compose(prompt, seconds, seed, clip))
            return audio

        out = Path(out)
        audio = await asyncio.to_thread(make)
        await asyncio.to_thread(write_wav_atomic, out, audio, SR)
        progress(1.0)
        return out


def write_wav_atomic(path: Path, audio: np.ndarray, sr: int) -> None:
    """A 32-bit float mono WAV, as MusicGen writes it; readers never see half a file."""
    write_audio_atomic(Path(path), audio, sr, format="WAV", subtype="FLOAT")


def write_music(clip: Path, score: Score) -> None:
    """Write the clip's `music` facts (style, key, tempo, instruments, section) beside it."""
    write_json_atomic(music_path(Path(clip)), score.music)
