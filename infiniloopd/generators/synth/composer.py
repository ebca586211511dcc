"""The procedural composer: a prompt and a seed in, a score of note events out (pure).

The prompt picks a style (keywords, else a stable hash of the prompt) and, through the
same hash, the key and the tempo, so every clip of one prompt belongs to one piece. The
seed picks what varies from clip to clip: the progression, voicings, rhythms, melody and
the small human deviations of timing and velocity.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np

# General MIDI drum keys (channel 10).
KICK, RIM, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, RIDE_BELL, SHAKER = 45, 47, 50, 49, 51, 53, 70
DRUM_CHANNEL = 9

MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
MINOR_LIKE = {"minor", "dorian"}
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclass(frozen=True)
class Fx:
    """How the rendered mix is finished (see fx.py)."""

    reverb_mix: float = 0.18
    reverb_seconds: float = 1.6
    lowpass_hz: float | None = None
    wow: float = 0.0  # depth of tape wow in milliseconds of delay modulation
    crackle: float = 0.0  # vinyl crackle level, 0..1
    hiss: float = 0.0  # tape hiss level, 0..1
    rain: float = 0.0  # rain texture level, 0..1
    saturation: float = 0.0  # soft tape saturation drive, 0..1


@dataclass(frozen=True)
class Voice:
    """One instrument part of a style: a GM program and how it plays."""

    program: int
    kind: str  # chords: sustain|stab|pulse|lofi|charleston|broken; lead: arp8|arp16|melody
    volume: int = 100  # MIDI CC7
    low: int = 55  # register for chord voicings / melodies
    high: int = 76


@dataclass(frozen=True)
class Style:
    """A musical recipe the keywords of a prompt select."""

    name: str
    bpm: tuple[int, int]
    modes: tuple[str, ...]
    major_progressions: tuple[tuple[int, ...], ...]
    minor_progressions: tuple[tuple[int, ...], ...]
    chords: Voice | None
    bass: Voice | None  # kind: sustain|pulse|offbeat|lofi|walking|pop|octaves
    lead: Voice | None
    pad: Voice | None = None
    drums: str | None = None  # pattern name, None for no drums
    drum_kit: int = 0  # GM2/GS drum kit program in bank 128 (0 standard, 25 TR-808 ...)
    drum_volume: int = 104  # MIDI CC7 of the drum channel
    beats_per_chord: int = 4
    sevenths: bool = False
    swing: float = 0.5  # position of the off-beat eighth within a beat (0.5 straight)
    humanize: float = 1.0
    fx: Fx = field(default_factory=Fx)


MAJOR_POP = ((0, 4, 5, 3), (0, 5, 3, 4), (3, 0, 4, 5), (0, 3, 5, 4), (5, 3, 0, 4))
MINOR_POP = ((0, 5, 2, 6), (0, 3, 5, 4), (0, 6, 5, 6), (5, 6, 0, 0), (0, 5, 3, 4))
JAZZ_MAJOR = ((1, 4, 0, 5), (0, 5, 1, 4), (2, 5, 1, 4), (3, 2, 1, 0))
JAZZ_MINOR = ((3, 6, 2, 5), (0, 3, 6, 2), (1, 4, 0, 0))
AMBIENT_MAJOR = ((0, 3), (0, 5, 3, 0), (3, 0, 4, 0), (0, 2, 3, 3))
AMBIENT_MINOR = ((0, 5), (0, 3, 5, 6), (5, 3, 0, 0), (0, 6, 5, 3))

STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            "ambient",
            (68, 76),
            ("major", "minor"),
            AMBIENT_MAJOR,
            AMBIENT_MINOR,
            chords=Voice(89, "sustain", 84, 52, 72),
            bass=Voice(48, "sustain", 90),
            lead=Voice(46, "arp8", 110, 64, 86),
            pad=Voice(49, "sustain", 73, 60, 79),
            beats_per_chord=8,
            sevenths=True,
            humanize=0.6,
            fx=Fx(reverb_mix=0.42, reverb_seconds=4.5, lowpass_hz=9000, hiss=0.15),
        ),
        Style(
            "lofi",
            (72, 86),
            ("major", "dorian"),
            JAZZ_MAJOR,
            JAZZ_MINOR,
            chords=Voice(4, "lofi", 57, 53, 72),
            bass=Voice(33, "lofi", 75),
            lead=Voice(11, "melody", 107, 67, 84),
            drums="lofi",
            drum_volume=120,
            swing=0.62,
            sevenths=True,
            humanize=1.4,
            fx=Fx(
                reverb_mix=0.16,
                reverb_seconds=1.3,
                lowpass_hz=4200,
                wow=1.6,
                crackle=0.6,
                hiss=0.35,
                saturation=0.35,
            ),
        ),
        Style(
            "chill",
            (80, 94),
            ("major", "dorian"),
            JAZZ_MAJOR,
            JAZZ_MINOR,
            chords=Voice(4, "broken", 58, 55, 74),
            bass=Voice(33, "pop", 68),
            lead=Voice(12, "melody", 71, 67, 84),
            pad=Voice(89, "sustain", 45, 55, 74),
            drums="chill",
            drum_volume=95,
            swing=0.56,
            sevenths=True,
            fx=Fx(reverb_mix=0.22, reverb_seconds=2.0, lowpass_hz=7500, hiss=0.1),
        ),
        Style(
            "techno",
            (125, 130),
            ("minor",),
            ((0, 0, 5, 6),),
            ((0, 0, 5, 6), (0, 0, 3, 4)),
            chords=Voice(81, "stab", 120, 57, 72),
            bass=Voice(38, "offbeat", 91),
            lead=Voice(87, "arp16", 86, 60, 79),
            pad=Voice(90, "sustain", 90, 55, 72),
            drums="techno",
            drum_volume=56,
            drum_kit=25,
            humanize=0.3,
            fx=Fx(reverb_mix=0.14, reverb_seconds=1.4),
        ),
        Style(
            "jazz",
            (96, 132),
            ("major",),
            JAZZ_MAJOR,
            JAZZ_MINOR,
            chords=Voice(0, "charleston", 79, 52, 71),
            bass=Voice(32, "walking", 54),
            lead=Voice(66, "melody", 54, 62, 80),
            drums="jazz",
            drum_volume=100,
            drum_kit=32,
            swing=0.66,
            sevenths=True,
            humanize=1.3,
            fx=Fx(reverb_mix=0.14, reverb_seconds=1.5),
        ),
        Style(
            "cinematic",
            (70, 90),
            ("minor",),
            ((0, 3, 5, 4),),
            MINOR_POP,
            chords=Voice(48, "pulse", 79, 50, 70),
            bass=Voice(43, "octaves", 105),
            lead=Voice(60, "melody", 61, 58, 77),
            pad=Voice(52, "sustain", 66, 60, 76),
            drums="cinematic",
            drum_volume=100,
            drum_kit=48,
            fx=Fx(reverb_mix=0.3, reverb_seconds=3.0),
        ),
        Style(
            "chiptune",
            (132, 150),
            ("major", "minor"),
            MAJOR_POP,
            MINOR_POP,
            chords=None,
            bass=Voice(81, "octaves", 120),
            lead=Voice(80, "arp16", 80, 60, 84),
            pad=Voice(80, "melody", 65, 72, 88),
            drums="chiptune",
            drum_volume=61,
            drum_kit=25,
            humanize=0.0,
            fx=Fx(reverb_mix=0.06, reverb_seconds=0.6),
        ),
        Style(
            "piano",
            (72, 92),
            ("major", "minor"),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(0, "broken", 94, 43, 64),
            bass=None,
            lead=Voice(0, "melody", 120, 64, 84),
            sevenths=False,
            humanize=1.2,
            fx=Fx(reverb_mix=0.22, reverb_seconds=2.2),
        ),
        Style(
            "rain",
            (66, 78),
            ("minor", "major"),
            AMBIENT_MAJOR + MAJOR_POP,
            MINOR_POP,
            chords=Voice(0, "broken", 105, 45, 66),
            bass=None,
            lead=Voice(0, "melody", 120, 64, 82),
            pad=Voice(49, "sustain", 50, 55, 72),
            sevenths=True,
            humanize=1.2,
            fx=Fx(reverb_mix=0.3, reverb_seconds=2.6, lowpass_hz=8000, rain=0.7),
        ),
        Style(
            "synthwave",
            (96, 112),
            ("minor",),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(90, "sustain", 120, 55, 74),
            bass=Voice(38, "pulse", 100),
            lead=Voice(81, "arp16", 110, 64, 84),
            pad=Voice(62, "stab", 101, 60, 76),
            drums="synthwave",
            drum_volume=75,
            drum_kit=25,
            humanize=0.4,
            fx=Fx(reverb_mix=0.26, reverb_seconds=2.4),
        ),
        Style(
            "morning",
            (92, 108),
            ("major", "mixolydian"),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(25, "broken", 68, 52, 71),
            bass=Voice(32, "pop", 72),
            lead=Voice(73, "melody", 57, 67, 86),
            drums="morning",
            drum_volume=100,
            fx=Fx(reverb_mix=0.18, reverb_seconds=1.6),
        ),
        Style(
            "focus",
            (84, 96),
            ("dorian", "major"),
            AMBIENT_MAJOR,
            AMBIENT_MINOR,
            chords=Voice(4, "sustain", 48, 53, 72),
            bass=Voice(33, "sustain", 67),
            lead=Voice(12, "arp8", 53, 62, 80),
            pad=Voice(89, "sustain", 37, 57, 74),
            drums="focus",
            drum_volume=80,
            sevenths=True,
            humanize=0.7,
            fx=Fx(reverb_mix=0.24, reverb_seconds=2.2, lowpass_hz=8000),
        ),
        Style(
            "evening",
            (76, 88),
            ("major", "dorian"),
            JAZZ_MAJOR,
            JAZZ_MINOR,
            chords=Voice(4, "charleston", 40, 52, 72),
            bass=Voice(32, "lofi", 51),
            lead=Voice(11, "melody", 61, 64, 82),
            drums="brush",
            drum_volume=85,
            drum_kit=40,
            swing=0.62,
            sevenths=True,
            humanize=1.2,
            fx=Fx(reverb_mix=0.22, reverb_seconds=1.9, lowpass_hz=9000),
        ),
        Style(
            "night",
            (64, 74),
            ("minor", "dorian"),
            AMBIENT_MAJOR,
            AMBIENT_MINOR,
            chords=Voice(89, "sustain", 65, 50, 70),
            bass=Voice(33, "sustain", 78),
            lead=Voice(0, "melody", 120, 62, 80),
            pad=Voice(8, "arp8", 58, 67, 86),
            beats_per_chord=8,
            sevenths=True,
            humanize=0.8,
            fx=Fx(reverb_mix=0.36, reverb_seconds=3.6, lowpass_hz=7000, hiss=0.1),
        ),
    )
}

# Keyword stems in priority order: genres win over moods, so "rainy lofi" is lofi (with
# rain), and "jazz at night" is jazz.
KEYWORDS: tuple[tuple[str, str], ...] = (
    ("techno", "techno"),
    ("house", "techno"),
    ("edm", "techno"),
    ("trance", "techno"),
    ("chiptune", "chiptune"),
    ("8bit", "chiptune"),
    ("8-bit", "chiptune"),
    ("retro game", "chiptune"),
    ("nes", "chiptune"),
    ("arcade", "chiptune"),
    ("synthwave", "synthwave"),
    ("retrowave", "synthwave"),
    ("outrun", "synthwave"),
    ("80s", "synthwave"),
    ("jazz", "jazz"),
    ("swing", "jazz"),
    ("bebop", "jazz"),
    ("lofi", "lofi"),
    ("lo-fi", "lofi"),
    ("lo fi", "lofi"),
    ("hiphop", "lofi"),
    ("hip hop", "lofi"),
    ("cinematic", "cinematic"),
    ("orchestra", "cinematic"),
    ("epic", "cinematic"),
    ("film", "cinematic"),
    ("trailer", "cinematic"),
    ("ambient", "ambient"),
    ("drone", "ambient"),
    ("meditat", "ambient"),
    ("space", "ambient"),
    ("piano", "piano"),
    ("classical", "piano"),
    ("morning", "morning"),
    ("sunrise", "morning"),
    ("acoustic", "morning"),
    ("guitar", "morning"),
    ("focus", "focus"),
    ("study", "focus"),
    ("work", "focus"),
    ("concentrat", "focus"),
    ("evening", "evening"),
    ("lounge", "evening"),
    ("sunset", "evening"),
    ("night", "night"),
    ("sleep", "night"),
    ("dream", "night"),
    ("rain", "rain"),
    ("storm", "rain"),
    ("chill", "chill"),
    ("relax", "chill"),
    ("calm", "chill"),
)
# Unknown prompts land on one of these, the styles that are pleasant without a hint.
DEFAULT_STYLES = ("chill", "lofi", "ambient", "piano", "focus", "evening", "morning")

DARK_WORDS = ("dark", "sad", "melanchol", "moody", "minor", "gloomy", "mysterious", "tense")
BRIGHT_WORDS = ("happy", "bright", "sunny", "uplift", "cheer", "joy", "major", "summer")
FAST_WORDS = ("fast", "energetic", "upbeat", "dance", "driving", "intense")
SLOW_WORDS = ("slow", "calm", "sleep", "gentle", "soft", "peaceful", "lazy")


@dataclass(frozen=True)
class Part:
    """A MIDI channel of the score."""

    name: str
    program: int
    channel: int
    volume: int = 100
    bank: int = 0


@dataclass(frozen=True)
class NoteEvent:
    """One note: times in seconds from the start of the clip."""

    start: float
    duration: float
    pitch: int
    velocity: int
    part: int  # index into Score.parts


@dataclass(frozen=True)
class Score:
    """Everything a renderer needs, and what the music claims to be (for tests)."""

    style: str
    bpm: float
    tonic: int  # pitch class 0..11
    mode: str
    parts: tuple[Part, ...]
    notes: tuple[NoteEvent, ...]
    fx: Fx
    seconds: float
    chords: tuple[tuple[int, ...], ...]  # the progression as chord pitch-class sets

    @property
    def key_name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def scale(self) -> frozenset[int]:
        return frozenset((self.tonic + i) % 12 for i in MODES[self.mode])


def stable_hash(text: str) -> int:
    """A stable hash: Python's hash() is salted per process, this one is not."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def normalize_prompt(prompt: str) -> str:
    return " ".join(re.findall(r"[a-z0-9\-]+", prompt.lower()))


def _has(text: str, stems: tuple[str, ...]) -> bool:
    return any(re.search(r"(?<![a-z0-9])" + re.escape(s), text) for s in stems)


def choose_style(prompt: str) -> Style:
    """The style a prompt asks for: its highest-priority keyword, else a stable hash."""
    text = normalize_prompt(prompt)
    for stem, name in KEYWORDS:
        if re.search(r"(?<![a-z0-9])" + re.escape(stem), text):
            return STYLES[name]
    return STYLES[DEFAULT_STYLES[stable_hash(text) % len(DEFAULT_STYLES)]]


def _adjust_style(style: Style, text: str) -> Style:
    """Modifier words: rain and vinyl textures, darker or brighter, faster or slower."""
    fx = style.fx
    if _has(text, ("rain", "storm")) and fx.rain == 0:
        fx = replace(fx, rain=0.55)
    if _has(text, ("vinyl", "tape", "dusty", "lofi", "lo-fi")) and fx.crackle == 0:
        fx = replace(fx, crackle=0.5, hiss=max(fx.hiss, 0.25))
    modes = style.modes
    if _has(text, DARK_WORDS):
        modes = tuple(m for m in modes if m in MINOR_LIKE) or ("minor",)
    elif _has(text, BRIGHT_WORDS):
        modes = tuple(m for m in modes if m not in MINOR_LIKE) or ("major",)
    lo, hi = style.bpm
    if style.name != "techno":  # techno's tempo is part of its definition
        if _has(text, FAST_WORDS):
            lo, hi = round(lo * 1.12), round(hi * 1.12)
        elif _has(text, SLOW_WORDS):
            lo, hi = round(lo * 0.9), round(hi * 0.9)
    return replace(style, fx=fx, modes=modes, bpm=(lo, hi))


def _chord_pcs(tonic: int, mode: str, degree: int, sevenths: bool) -> tuple[int, ...]:
    """Pitch classes of the diatonic chord on a scale degree, root first."""
    scale = MODES[mode]
    steps = (0, 2, 4, 6) if sevenths else (0, 2, 4)
    return tuple((tonic + scale[(degree + s) % 7]) % 12 for s in steps)


def _voice(
    pcs: tuple[int, ...],
    low: int,
    high: int,
    previous: tuple[int, ...] | None,
) -> tuple[int, ...]:
    """Place chord tones in a register with the smallest motion from the last voicing."""
    options = []
    for pc in pcs:
        first = low + (pc - low) % 12
        options.append([p for p in range(first, high + 1, 12)] or [first])
    centre = (low + high) / 2
    best, best_cost = None, float("inf")
    for combo in product(*options):
        voicing = tuple(sorted(combo))
        if len(set(voicing)) < len(voicing):
            continue
        if voicing[-1] - voicing[0] > 19:  # keep it a hand's width: no sprawling chords
            continue
        cost = abs(float(np.mean(voicing)) - centre) * 0.6
        if previous is not None:
            cost += sum(abs(a - b) for a, b in zip(voicing, previous, strict=False))
        if cost < best_cost:
            best, best_cost = voicing, cost
    return best if best is not None else tuple(sorted(o[0] for o in options))


def _near(pc: int, target: float, low: int, high: int) -> int:
    """The pitch of a pitch class closest to a target, kept inside [low, high]."""
    candidates = [p for p in range(low, high + 1) if p % 12 == pc]
    return min(candidates, key=lambda p: abs(p - target))


# Drum patterns: instrument -> list of (sixteenth step in a bar, velocity).
DRUMS: dict[str, dict[int, list[tuple[int, int]]]] = {
    "techno": {
        KICK: [(0, 118), (4, 118), (8, 118), (12, 118)],
        CLAP: [(4, 92), (12, 96)],
        OPEN_HAT: [(2, 78), (6, 80), (10, 78), (14, 82)],
        CLOSED_HAT: [(s, 44 + 14 * (s % 2 == 0)) for s in range(16)],
    },
    "lofi": {
        KICK: [(0, 100), (7, 70), (10, 92)],
        SNARE: [(4, 84), (12, 88)],
        CLOSED_HAT: [(s, 56 if s % 4 == 0 else 42) for s in range(0, 16, 2)],
    },
    "chill": {
        KICK: [(0, 96), (6, 64), (8, 90)],
        RIM: [(4, 70), (12, 74)],
        SHAKER: [(s, 46 if s % 2 else 58) for s in range(16)],
    },
    "jazz": {
        RIDE: [(0, 76), (4, 88), (6, 60), (8, 78), (12, 90), (14, 62)],
        PEDAL_HAT: [(4, 62), (12, 64)],
        KICK: [(0, 50), (8, 44)],
    },
    "brush": {
        SNARE: [(0, 40), (4, 58), (6, 36), (8, 42), (12, 60), (14, 38)],
        KICK: [(0, 56), (8, 48)],
        PEDAL_HAT: [(4, 50), (12, 52)],
    },
    "cinematic": {
        KICK: [(0, 96), (8, 84)],
        LOW_TOM: [(12, 70), (14, 82)],
        MID_TOM: [(4, 60), (6, 64)],
    },
    "chiptune": {
        KICK: [(0, 110), (6, 96), (8, 108)],
        SNARE: [(4, 100), (12, 104)],
        CLOSED_HAT: [(s, 64 if s % 4 == 0 else 50) for s in range(0, 16, 2)],
    },
    "synthwave": {
        KICK: [(0, 112), (4, 100), (8, 112), (12, 100)],
        SNARE: [(4, 104), (12, 108)],
        CLOSED_HAT: [(s, 60 if s % 4 == 2 else 40) for s in range(16)],
    },
    "morning": {
        KICK: [(0, 96), (8, 86), (10, 70)],
        SNARE: [(4, 80), (12, 84)],
        SHAKER: [(s, 58 if s % 4 == 2 else 42) for s in range(0, 16, 2)],
    },
    "focus": {
        KICK: [(0, 84), (8, 74)],
        RIM: [(4, 56), (12, 60)],
        SHAKER: [(s, 40 if s % 2 else 52) for s in range(16)],
    },
}


@dataclass
class _Builder:
    """Accumulates notes with the style's timing grid and humanization."""

    rng: np.random.Generator
    bpm: float
    swing: float
    humanize: float
    offset: float
    seconds: float
    notes: list[NoteEvent] = field(default_factory=list)

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    def time(self, beats: float) -> float:
        """Seconds for a position in beats, with off-beat eighths swung."""
        whole = np.floor(beats)
        frac = beats - whole
        if self.swing != 0.5:
            # Piecewise-linear map: 0..0.5 -> 0..swing, 0.5..1 -> swing..1.
            frac = (
                frac * 2 * self.swing
                if frac < 0.5
                else (self.swing + (frac - 0.5) * 2 * (1 - self.swing))
            )
        return self.offset + (whole + frac) * self.beat

    def add(
        self,
        part: int,
        pitch: int,
        beats: float,
        length: float,
        velocity: float,
        jitter_ms: float = 8.0,
        tight: bool = False,
    ) -> None:
        start = self.time(beats)
        end = self.time(beats + length)
        if not tight and self.humanize > 0:
            start += float(self.rng.normal(0, jitter_ms * self.humanize / 1000))
            velocity += float(self.rng.normal(0, 6 * self.humanize))
        start = max(start, 0.0)
        if start >= self.seconds:
            return
        vel = int(np.clip(round(velocity), 1, 127))
        self.notes.append(NoteEvent(start, max(end - start, 0.03), int(pitch), vel, part))


def compose(prompt: str, seconds: float, seed: int) -> Score:
    """Compose `seconds` of music for a prompt; same prompt and seed, same score."""
    text = normalize_prompt(prompt)
    style = _adjust_style(choose_style(prompt), text)
    identity = stable_hash(text)  # fixed per prompt: key, tempo, mode
    rng = np.random.default_rng([identity & 0xFFFFFFFF, seed & 0xFFFFFFFF, 1])

    tonic = identity % 12
    mode = style.modes[(identity >> 8) % len(style.modes)]
    lo, hi = style.bpm
    bpm = lo + ((identity >> 16) % 1000) / 999 * (hi - lo)
    # Clips of one prompt vary a hair in tempo, never out of the family.
    bpm = round(bpm * (1 + rng.uniform(-0.012, 0.012)), 2)
    if style.name == "techno":
        bpm = float(np.clip(bpm, 125, 130))

    minor = mode in MINOR_LIKE
    progressions = style.minor_progressions if minor else style.major_progressions
    progression = progressions[int(rng.integers(len(progressions)))]
    # Start somewhere inside the progression: clips are excerpts, not intros.
    rotate = int(rng.integers(len(progression))) if len(progression) > 2 else 0
    progression = progression[rotate:] + progression[:rotate]

    offset = float(rng.uniform(0.0, 0.12))
    b = _Builder(rng, bpm, style.swing, style.humanize, offset, seconds)
    total_beats = int(np.ceil((seconds - offset) / b.beat)) + 1
    chord_beats = style.beats_per_chord
    n_chords = int(np.ceil(total_beats / chord_beats))
    chords = [
        _chord_pcs(tonic, mode, progression[i % len(progression)], style.sevenths)
        for i in range(n_chords)
    ]

    parts: list[Part] = []

    def new_part(name: str, voice: Voice) -> int:
        channel = len(parts) if len(parts) < DRUM_CHANNEL else len(parts) + 1
        parts.append(Part(name, voice.program, channel, voice.volume))
        return len(parts) - 1

    for role, voice in (("chords", style.chords), ("pad", style.pad)):
        if voice is None:
            continue
        idx = new_part(role, voice)
        if voice.kind in ("arp8", "arp16", "melody"):
            _lead(b, idx, voice, chords, chord_beats, total_beats, tonic, mode)
        else:
            _comp(b, idx, voice, chords, chord_beats, role == "pad")
    if style.bass is not None:
        idx = new_part("bass", style.bass)
        _bass(b, idx, style.bass, chords, chord_beats, tonic, mode)
    if style.lead is not None:
        idx = new_part("lead", style.lead)
        _lead(b, idx, style.lead, chords, chord_beats, total_beats, tonic, mode)
    if style.drums is not None:
        parts.append(Part("drums", style.drum_kit, DRUM_CHANNEL, style.drum_volume, bank=128))
        _drums(b, len(parts) - 1, style.drums, total_beats)

    notes = tuple(sorted(b.notes, key=lambda n: (n.start, n.part, n.pitch)))
    return Score(
        style.name, bpm, tonic, mode, tuple(parts), notes, style.fx, seconds, tuple(chords)
    )


def _comp(
    b: _Builder,
    part: int,
    voice: Voice,
    chords: list[tuple[int, ...]],
    chord_beats: int,
    quiet: bool,
) -> None:
    """Chord instrument: voice-led voicings in the style's comping rhythm."""
    previous = None
    vel = 62 if quiet else 74
    pattern = int(b.rng.integers(3))
    for i, pcs in enumerate(chords):
        voicing = _voice(pcs, voice.low, voice.high, previous)
        previous = voicing
        t0 = i * chord_beats
        kind = voice.kind
        if kind == "sustain":
            for k, p in enumerate(voicing):
                b.add(part, p, t0 + 0.02 * k, chord_beats * 0.98, vel - 4 * k)
        elif kind == "stab":
            steps = ((0.5, 1.5, 2.5, 3.5), (0.5, 1.75, 2.5), (0.75, 1.5, 3.0, 3.5))[pattern]
            for bar in range(chord_beats // 4):
                for s in steps:
                    for p in voicing:
                        b.add(part, p, t0 + 4 * bar + s, 0.22, vel + 6, tight=True)
        elif kind == "pulse":
            for e in range(chord_beats * 2):
                accent = 10 if e % 2 == 0 else 0
                for p in voicing:
                    b.add(part, p, t0 + e / 2, 0.45, vel - 8 + accent)
        elif kind == "lofi":
            for bar in range(chord_beats // 4):
                t = t0 + 4 * bar
                for k, p in enumerate(voicing):  # a slight strum, as hands do
                    b.add(part, p, t + 0.03 * k, 2.4, vel + 2)
                hit = (2.5, 3.0, 3.5)[pattern]
                for p in voicing[1:]:
                    b.add(part, p, t + hit, 4 - hit - 0.1, vel - 12)
        elif kind == "charleston":
            for bar in range(chord_beats // 4):
                t = t0 + 4 * bar
                hits = ((0, 1.2), (1.5, 0.4)) if pattern != 2 else ((0, 0.8), (2.5, 1.0))
                for start, length in hits:
                    for p in voicing:
                        b.add(part, p, t + start, length, vel - 2)
        elif kind == "broken":
            figure = ((0, 2, 1, 3, 2, 1, 3, 2), (0, 1, 2, 3, 2, 1, 2, 3), (0, 3, 1, 2, 0, 3, 1, 2))[
                pattern
            ]
            low = voicing[0] - 12 if voicing[0] - 12 >= 36 else voicing[0]
            tones = (low, *voicing)
            for bar in range(chord_beats // 4):
                for e, idx in enumerate(figure):
                    p = tones[idx % len(tones)]
                    accent = 12 if e % 2 == 0 else 0
                    b.add(part, p, t0 + 4 * bar + e / 2, 1.6, vel - 10 + accent)


def _bass(
    b: _Builder,
    part: int,
    voice: Voice,
    chords: list[tuple[int, ...]],
    chord_beats: int,
    tonic: int,
    mode: str,
) -> None:
    """Bass line under the chords; walking lines approach the next root chromatically."""
    low, high = 28, 50
    prev = 40.0
    scale = sorted((tonic + i) % 12 for i in MODES[mode])
    for i, pcs in enumerate(chords):
        root = _near(pcs[0], prev, low, high)
        fifth = _near(pcs[2], root + 5, root, root + 12)
        nxt = chords[(i + 1) % len(chords)][0]
        t0 = i * chord_beats
        kind = voice.kind
        for bar in range(chord_beats // 4):
            t = t0 + 4 * bar
            last_bar = bar == chord_beats // 4 - 1
            if kind == "sustain":
                b.add(part, root, t, 3.9, 78)
            elif kind == "offbeat":
                for e in range(4):
                    b.add(part, root, t + e + 0.5, 0.35, 100, tight=True)
            elif kind == "pulse":
                for e in range(8):
                    b.add(part, root, t + e / 2, 0.4, 96 if e % 2 == 0 else 82, tight=True)
            elif kind == "octaves":
                for e in range(8):
                    b.add(part, root + (12 if e % 2 else 0), t + e / 2, 0.4, 90 - 6 * (e % 2))
            elif kind == "pop":
                b.add(part, root, t, 1.4, 96)
                b.add(part, root, t + 1.5, 0.45, 78)
                b.add(part, fifth, t + 2.5, 1.0, 84)
                b.add(part, root + 12 if root + 12 <= high else root, t + 3.5, 0.45, 74)
            elif kind == "lofi":
                b.add(part, root, t, 1.7, 98)
                b.add(part, fifth if b.rng.random() < 0.5 else root, t + 2.5, 1.2, 86)
            elif kind == "walking":
                third = _near(pcs[1], root + 4, root, root + 12)
                target = _near(nxt, root, low + 1, high - 1)
                approach = target + (1 if b.rng.random() < 0.5 else -1)
                if not last_bar:
                    above = [p for p in range(root + 1, root + 6) if p % 12 in scale]
                    approach = above[0] if above else fifth
                line = (root, third if b.rng.random() < 0.6 else fifth, fifth, approach)
                for e, p in enumerate(line):
                    b.add(part, int(np.clip(p, low, high)), t + e, 0.92, 96 - 8 * (e % 2))
        prev = root


def _lead(
    b: _Builder,
    part: int,
    voice: Voice,
    chords: list[tuple[int, ...]],
    chord_beats: int,
    total_beats: int,
    tonic: int,
    mode: str,
) -> None:
    """Arpeggios over the chords, or a melody built from a repeated, re-fitted motif."""
    if voice.kind in ("arp8", "arp16"):
        per_beat = 2 if voice.kind == "arp8" else 4
        # Figures of 4 or 8 steps only: a 3- or 6-step cycle over sixteenths is a lovely
        # hemiola, and it also makes a beat tracker hear two thirds of the real tempo.
        shapes = (
            (0, 1, 2, 3),
            (0, 1, 2, 3, 4, 3, 2, 1),
            (0, 2, 1, 3, 0, 2, 1, 3),
            (0, 1, 2, 1, 3, 2, 1, 2),
        )
        shape = shapes[int(b.rng.integers(len(shapes)))]
        centre = (voice.low + voice.high) / 2 - 4
        for i, pcs in enumerate(chords):
            tones = sorted({_near(pc, centre, voice.low, voice.high) for pc in pcs})
            tones = [*tones, tones[0] + 12]
            for e in range(chord_beats * per_beat):
                accent = 14 if e % per_beat == 0 else 0
                pitch = tones[shape[e % len(shape)] % len(tones)]
                b.add(
                    part,
                    pitch,
                    i * chord_beats + e / per_beat,
                    1.5 / per_beat,
                    68 + accent,
                    jitter_ms=4,
                )
        return

    # Melody: one-bar rhythms (onset in beats, length), a motif repeated in a question /
    # answer shape, pitches chosen per note from the chord underneath.
    rhythms = (
        ((0, 1.5), (1.5, 0.5), (2, 1), (3, 1)),
        ((0, 0.5), (0.5, 0.5), (1, 1.5), (3, 0.5), (3.5, 0.5)),
        ((0.5, 1), (1.5, 1), (2.5, 1.5)),
        ((0, 2), (2.5, 0.5), (3, 1)),
        ((0, 1), (1, 0.5), (1.5, 0.5), (2, 2)),
    )
    motif = [rhythms[int(b.rng.integers(len(rhythms)))] for _ in range(2)]
    answer = rhythms[int(b.rng.integers(len(rhythms)))]
    scale = sorted((tonic + i) % 12 for i in MODES[mode])
    pitches_in_range = [p for p in range(voice.low, voice.high + 1) if p % 12 in scale]
    pitch = float(_near(chords[0][0], (voice.low + voice.high) / 2, voice.low, voice.high))
    bars = int(np.ceil(total_beats / 4))
    for bar in range(bars):
        phrase_pos = bar % 4
        if phrase_pos == 3 and b.rng.random() < 0.5:
            continue  # breathe at the end of a phrase
        rhythm = (
            motif[phrase_pos % 2] if phrase_pos < 2 else (answer if phrase_pos == 3 else motif[0])
        )
        for onset, length in rhythm:
            beat = bar * 4 + onset
            pcs = chords[min(int(beat // chord_beats), len(chords) - 1)]
            if onset % 1 == 0:  # strong positions land on chord tones
                choices = [p for p in pitches_in_range if p % 12 in pcs]
            else:
                choices = pitches_in_range
            step = b.rng.normal(0, 2.5) + ((voice.low + voice.high) / 2 - pitch) * 0.15
            target = pitch + step
            pitch = float(min(choices, key=lambda p, t=target: abs(p - t)))
            b.add(part, int(pitch), beat, length * 0.95, 82 + (8 if onset == 0 else 0))


def _drums(b: _Builder, part: int, pattern_name: str, total_beats: int) -> None:
    """The style's drum pattern, with the odd fill and ghost note."""
    pattern = DRUMS[pattern_name]
    bars = int(np.ceil(total_beats / 4))
    tight = pattern_name in ("techno", "synthwave", "chiptune")
    for bar in range(bars):
        fill = bar % 4 == 3 and b.rng.random() < 0.5
        for key, hits in pattern.items():
            for step, vel in hits:
                if fill and step >= 12 and key in (CLOSED_HAT, SHAKER, RIDE):
                    continue
                b.add(
                    part,
                    key,
                    bar * 4 + step / 4,
                    0.2,
                    vel,
                    jitter_ms=4,
                    tight=tight and key == KICK,
                )
        if fill:
            tom = SNARE if pattern_name not in ("jazz", "brush", "cinematic") else MID_TOM
            for step in (12, 13, 14, 15):
                b.add(part, tom, bar * 4 + step / 4, 0.2, 50 + 8 * (step - 12), jitter_ms=3)
        if pattern_name not in ("cinematic", "brush") and b.rng.random() < 0.25:
            b.add(part, SNARE, bar * 4 + float(b.rng.choice((1.75, 3.25, 2.75))), 0.1, 28)
    if pattern_name in ("synthwave", "cinematic", "chiptune"):
        b.add(part, CRASH, 0, 2, 80)
