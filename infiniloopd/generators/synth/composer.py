"""The procedural composer: a prompt, a seed and a clip index in, a score out (pure).

The prompt (read by prompt.py) fixes the piece: style, tempo, home key, instruments and
feel, so every clip of one prompt belongs together. The clip index moves through the
piece's form (sections.py): sections with their own progressions, related keys, layers
that enter and leave, density that rises and falls. The seed picks what varies from
take to take: where in the progression the clip starts, voicings, melody steps, fills
and the small human deviations of timing and velocity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np

from .drums import drums as drum_part
from .prompt import Spec, normalize_prompt, parse, stable_hash
from .sections import Section, section_for
from .styles import (
    DEFAULT_STYLES,
    DRUM_CHANNEL,
    MINOR_LIKE,
    MODES,
    PITCH_NAMES,
    STYLES,
    Fx,
    Style,
    Voice,
)

__all__ = [
    "DEFAULT_STYLES",
    "DRUM_CHANNEL",
    "MINOR_LIKE",
    "MODES",
    "STYLES",
    "Fx",
    "NoteEvent",
    "Part",
    "Score",
    "Style",
    "Voice",
    "choose_style",
    "compose",
    "normalize_prompt",
    "stable_hash",
]

# Short names for the programs the composer uses, for the sidecar's `music` facts.
GM_FAMILIES = (
    "piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble",
    "brass", "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic",
    "percussive", "sound effects",
)  # fmt: skip
GM_NAMES = {
    0: "piano", 4: "electric piano", 6: "harpsichord", 8: "celesta", 9: "glockenspiel",
    10: "music box", 11: "vibraphone", 12: "marimba", 14: "bells", 16: "organ",
    19: "church organ", 21: "accordion", 22: "harmonica", 24: "nylon guitar",
    25: "acoustic guitar", 26: "jazz guitar", 27: "electric guitar", 28: "muted guitar",
    29: "overdriven guitar", 30: "distorted guitar", 32: "upright bass", 33: "electric bass",
    34: "picked bass", 36: "slap bass", 38: "synth bass", 40: "violin", 41: "viola",
    42: "cello", 43: "contrabass", 46: "harp", 48: "strings", 49: "slow strings",
    52: "choir", 56: "trumpet", 57: "trombone", 60: "french horn", 61: "brass",
    62: "synth brass", 66: "tenor sax", 68: "oboe", 71: "clarinet", 73: "flute",
    80: "square lead", 81: "saw lead", 87: "bass lead", 88: "fantasia pad", 89: "warm pad",
    90: "polysynth pad", 91: "choir pad", 95: "sweep pad", 98: "crystal", 104: "sitar",
    105: "banjo", 108: "kalimba", 114: "steel drums",
}  # fmt: skip


def program_name(program: int) -> str:
    return GM_NAMES.get(program, GM_FAMILIES[program // 8])


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
    """One note: times in seconds from the start of the clip (negative in the pre-roll)."""

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
    tonic: int  # pitch class 0..11 of this clip's key (its section's)
    mode: str
    parts: tuple[Part, ...]
    notes: tuple[NoteEvent, ...]
    fx: Fx
    seconds: float
    chords: tuple[tuple[int, ...], ...]  # the progression as chord pitch-class sets
    chord_times: tuple[float, ...] = ()  # start of each chord, seconds from the clip start
    preroll: float = 0.0  # seconds of music before the clip, played only to fill the reverb
    section: str = "A"
    music: dict = field(default_factory=dict)  # facts for the loop's sidecar

    @property
    def key_name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def scale(self) -> frozenset[int]:
        return frozenset((self.tonic + i) % 12 for i in MODES[self.mode])

    def from_preroll(self) -> Score:
        """The same score with times counted from the start of the pre-roll (to render)."""
        notes = tuple(replace(n, start=n.start + self.preroll) for n in self.notes)
        return replace(self, notes=notes, seconds=self.seconds + self.preroll, preroll=0.0)


def choose_style(prompt: str) -> Style:
    """The style a prompt asks for (see prompt.py for how)."""
    return parse(prompt).style


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


@dataclass
class _Builder:
    """Accumulates notes with the style's timing grid, humanization and density."""

    rng: np.random.Generator
    bpm: float
    swing: float
    humanize: float
    offset: float
    seconds: float
    density: float = 1.0
    velocity_shift: int = 0
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
        optional: bool = False,
    ) -> None:
        if optional and self.density < 1.0 and self.rng.random() > self.density:
            return  # sparser sections leave out what the music can do without
        start = self.time(beats)
        end = self.time(beats + length)
        if not tight and self.humanize > 0:
            start += float(self.rng.normal(0, jitter_ms * self.humanize / 1000))
            velocity += float(self.rng.normal(0, 6 * self.humanize))
        start = max(start, 0.0)
        if start >= self.seconds:
            return
        vel = int(np.clip(round(velocity + self.velocity_shift), 1, 127))
        self.notes.append(NoteEvent(start, max(end - start, 0.03), int(pitch), vel, part))

    def add_at(self, part: int, pitch: int, start: float, seconds: float, velocity: float) -> None:
        """A note at a time in seconds, off the beat grid (ambient layers on own timers)."""
        if start >= self.seconds or start + seconds <= 0:
            return
        vel = int(np.clip(round(velocity + self.velocity_shift), 1, 127))
        begin = max(start, 0.0)
        self.notes.append(NoteEvent(begin, start + seconds - begin, int(pitch), vel, part))


# --- choosing the parts ---------------------------------------------------------------------

STAND_INS = {"chords": (4, 0, 26, 48, 89), "lead": (73, 11, 66, 81, 40)}
SUSTAINED_PROGRAMS = set(range(40, 56)) | set(range(56, 80)) | set(range(88, 96)) | {16, 19, 21}


def _kind_for(role: str, program: int, style: Style) -> str:
    if role == "chords":
        if program in SUSTAINED_PROGRAMS:
            return "sustain"
        if 24 <= program < 32:
            return "strum" if program in (24, 25) else "power" if program >= 29 else "broken"
        return "broken"
    if role == "lead":
        return "phase" if style.drift else "melody"
    if role == "bass":
        return style.bass.kind if style.bass is not None else "pop"
    return "sustain"


def _voices(spec: Spec, section: Section) -> dict[str, Voice]:
    """The parts of this clip: the style's, with the prompt's instruments honoured."""
    style = spec.style
    slots: dict[str, Voice | None] = {
        "chords": style.chords,
        "pad": style.pad,
        "lead": style.lead,
        "bass": style.bass,
    }
    named = list(spec.instruments)
    if spec.only and named:
        # Nothing but what is named: the first instrument plays the harmony and the
        # tune, the others a part each.
        slots = {"chords": None, "pad": None, "lead": None, "bass": None}
        first = named[0]
        if first.role == "bass":
            slots["bass"] = Voice(first.program, "walking", 100)
        else:
            chord_kind = _kind_for("chords", first.program, style)
            slots["chords"] = Voice(first.program, chord_kind, 96, 48, 67)
            slots["lead"] = Voice(first.program, "melody", 104, 64, 84)
        named = named[1:]
    used: set[str] = set()
    named_programs = {i.program for i in spec.instruments}
    preference = {
        "chords": ("chords", "pad", "lead"),
        "lead": ("lead", "pad", "chords"),
        "pad": ("pad", "chords", "lead"),
        "bass": ("bass",),
    }
    extras: list[Voice] = []
    for inst in named:
        if any(v is not None and v.program == inst.program for v in slots.values()):
            continue  # the style already plays it
        for role in preference[inst.role]:
            old = slots[role]
            if role in used or (old is not None and old.program in named_programs):
                continue
            if old is None and role != inst.role and not spec.only:
                continue  # do not invent a second part for it when its own is free later
            kind = _kind_for(role, inst.program, style)
            if old is not None and role != "bass":
                kind = old.kind if _kind_fits(old.kind, inst.program) else kind
            low, high = (old.low, old.high) if old is not None else _register(role)
            volume = old.volume if old is not None else 96
            slots[role] = Voice(inst.program, kind, volume, low, high)
            used.add(role)
            break
        else:
            extras.append(Voice(inst.program, _kind_for(inst.role, inst.program, style), 90))
    for i, v in enumerate(extras[:2]):
        slots[f"extra{i}"] = v
    if spec.density > 1.1 and slots.get("pad") is None and not spec.only:
        slots["pad"] = Voice(89, "sustain", 60, 55, 74)
    # Refusals: "without piano" takes out every part playing a piano; the harmony and the
    # tune pass to an instrument that was not refused.
    for role, v in list(slots.items()):
        if v is not None and v.program in spec.excluded_programs:
            stand_ins = [p for p in STAND_INS.get(role, ()) if p not in spec.excluded_programs]
            slots[role] = None
            if stand_ins and not spec.only:
                p = stand_ins[0]
                kind = v.kind if _kind_fits(v.kind, p) else _kind_for(role, p, style)
                slots[role] = replace(v, program=p, kind=kind)
    if spec.no_bass:
        slots["bass"] = None
    voices = {r: v for r, v in slots.items() if v is not None}
    # Sections rest some layers, but never the whole harmony, and never a named part.
    resting = {r for r in section.silent if r in voices and voices[r].program not in named_programs}
    if spec.only:
        resting = {r for r in resting if r == "lead"} if len(voices) > 1 else set()
    if set(voices) - resting - {"drums"}:
        for r in resting:
            voices.pop(r, None)
    shift = spec.register_shift
    if shift:
        voices = {
            r: replace(v, low=max(v.low + shift, 28), high=min(v.high + shift, 100))
            if r != "bass"
            else v
            for r, v in voices.items()
        }
    return voices


def _kind_fits(kind: str, program: int) -> bool:
    """Whether an instrument can play a part written for another (pads do not pluck)."""
    sustained = program in SUSTAINED_PROGRAMS
    if kind in ("sustain", "pulse"):
        return True
    if kind == "phase":
        return True
    if kind in ("melody", "arp8", "arp16"):
        return True
    return not sustained


def _register(role: str) -> tuple[int, int]:
    return {"chords": (50, 70), "pad": (55, 74), "lead": (64, 84)}.get(role, (55, 76))


def _piece(spec: Spec) -> tuple[int, str, float]:
    """The piece's home key, mode and tempo: fixed for every clip of the prompt."""
    style = spec.style
    identity = spec.identity
    modes = style.modes
    if spec.dark:
        modes = tuple(m for m in modes if m in MINOR_LIKE) or ("minor",)
    elif spec.bright:
        modes = tuple(m for m in modes if m not in MINOR_LIKE) or ("major",)
    tonic = identity % 12
    mode = modes[(identity >> 8) % len(modes)]
    if spec.bpm is not None:
        return tonic, mode, float(spec.bpm)
    lo, hi = style.bpm
    bpm = lo + ((identity >> 16) % 1000) / 999 * (hi - lo)
    if not style.fixed_tempo:
        bpm *= spec.tempo_scale
    return tonic, mode, round(bpm, 2)


def _fx(spec: Spec) -> Fx:
    fx = spec.style.fx
    if "rain" in spec.textures and fx.rain == 0:
        fx = replace(fx, rain=0.55)
    if "vinyl" in spec.textures and fx.crackle == 0:
        fx = replace(fx, crackle=0.5, hiss=max(fx.hiss, 0.25))
    if spec.dreamy:
        fx = replace(
            fx,
            reverb_mix=min(fx.reverb_mix + 0.12, 0.55),
            reverb_seconds=fx.reverb_seconds * 1.4,
            lowpass_hz=min(fx.lowpass_hz or 20000, 8000),
        )
    return fx


def compose(prompt: str, seconds: float, seed: int, clip: int | None = None) -> Score:
    """Compose clip number `clip` of a prompt's piece; same arguments, same score.

    `clip` None derives the position in the form from the seed (callers that make a
    series of clips pass 0, 1, 2, ...).
    """
    spec = parse(prompt)
    if clip is None:
        clip = seed % 24
    style = spec.style
    identity = spec.identity
    id32 = identity & 0xFFFFFFFF
    home_tonic, home_mode, bpm = _piece(spec)
    section = section_for(clip, home_tonic, home_mode, style.drift, identity)
    tonic, mode = section.tonic, section.mode
    rng = np.random.default_rng([id32, seed & 0xFFFFFFFF, 1])  # this take
    srng = np.random.default_rng([id32, section.progression, 7])  # this section's material

    minor = mode in MINOR_LIKE
    progressions = style.minor_progressions if minor else style.major_progressions
    progression = progressions[((identity >> 20) + section.progression) % len(progressions)]
    # Start somewhere inside the progression: clips are excerpts, not intros.
    rotate = int(rng.integers(len(progression)))
    progression = progression[rotate:] + progression[:rotate]

    fx = _fx(spec)
    beat = 60.0 / bpm
    chord_beats = style.beats_per_chord
    # Music before the clip, so the reverb is already full at its first sample.
    pre_chords = int(np.ceil(min(fx.reverb_seconds, 4.0) * 0.8 / (chord_beats * beat)))
    pre_beats = pre_chords * chord_beats
    preroll = pre_beats * beat
    offset = float(rng.uniform(0.0, 0.12))
    b = _Builder(
        rng,
        bpm,
        style.swing,
        style.humanize,
        offset,
        seconds + preroll,
        density=min(spec.density * section.density, 1.0),
        velocity_shift=spec.velocity_shift,
    )
    total_beats = int(np.ceil((seconds + preroll - offset) / beat)) + 1
    n_chords = int(np.ceil(total_beats / chord_beats))
    # Chord i of the list starts at beat i * chord_beats; the clip starts at pre_beats.
    start_index = (-pre_chords) % len(progression)
    chords = [
        _chord_pcs(tonic, mode, progression[(i + start_index) % len(progression)], style.sevenths)
        for i in range(n_chords)
    ]

    voices = _voices(spec, section)
    parts: list[Part] = []

    def new_part(name: str, voice: Voice) -> int:
        channel = len(parts) if len(parts) < DRUM_CHANNEL else len(parts) + 1
        parts.append(Part(name, voice.program, channel, voice.volume))
        return len(parts) - 1

    clip_start = clip * seconds - preroll  # where this clip's pre-roll sits in the piece
    for role in ("chords", "pad", "extra0", "extra1", "bass", "lead"):
        voice = voices.get(role)
        if voice is None:
            continue
        idx = new_part(role, voice)
        if role == "bass":
            _bass(b, idx, voice, chords, chord_beats, tonic, mode)
        elif voice.kind == "phase":
            _phase(b, idx, voice, tonic, mode, identity, clip_start)
        elif voice.kind in ("arp8", "arp16", "melody"):
            _lead(b, idx, voice, chords, chord_beats, total_beats, tonic, mode, srng)
        else:
            _comp(b, idx, voice, chords, chord_beats, role != "chords", srng)
    drums = style.drums
    if spec.no_drums or "drums" in section.silent:
        drums = None
    if drums is not None:
        volume = max(
            style.drum_volume + (spec.velocity_shift if spec.velocity_shift < 0 else 0), 30
        )
        parts.append(Part("drums", style.drum_kit, DRUM_CHANNEL, volume, bank=128))
        drum_part(b, len(parts) - 1, drums, total_beats, pre_beats)

    notes = tuple(
        sorted(
            (replace(n, start=n.start - preroll) for n in b.notes),
            key=lambda n: (n.start, n.part, n.pitch),
        )
    )
    chord_times = tuple(offset + (i * chord_beats - pre_beats) * beat for i in range(n_chords))
    key = f"{PITCH_NAMES[tonic]} {mode}"
    music = {
        "style": style.name,
        "key": key,
        "home_key": f"{PITCH_NAMES[home_tonic]} {home_mode}",
        "tempo": bpm,
        # the beat as composed: bars of 4 beats, the first bar line of the clip (s)
        "beats_per_bar": 4,
        "downbeat": round(offset + ((-pre_beats) % 4) * beat, 6),
        "instruments": sorted({program_name(p.program) for p in parts if p.bank != 128}),
        "drums": drums is not None,
        "section": section.name,
        "clip": clip,
        "matched": spec.matched,
    }
    return Score(
        style.name,
        bpm,
        tonic,
        mode,
        tuple(parts),
        notes,
        fx,
        seconds,
        tuple(chords),
        chord_times,
        preroll,
        section.name,
        music,
    )


def _comp(
    b: _Builder,
    part: int,
    voice: Voice,
    chords: list[tuple[int, ...]],
    chord_beats: int,
    quiet: bool,
    srng: np.random.Generator,
) -> None:
    """Chord instrument: voice-led voicings in the style's comping rhythm."""
    previous = None
    vel = 62 if quiet else 74
    pattern = int(srng.integers(3))
    for i, pcs in enumerate(chords):
        voicing = _voice(pcs, voice.low, voice.high, previous)
        previous = voicing
        t0 = i * chord_beats
        kind = voice.kind
        if kind == "sustain":
            for k, p in enumerate(voicing):
                b.add(part, p, t0 + 0.02 * k, chord_beats * 0.98, vel - 4 * k)
        elif kind == "stab":
            # An off-beat in every beat: sparser stabs read as a 3-against-4 to the ear and
            # to beat trackers.
            steps = ((0.5, 1.5, 2.5, 3.5), (0.5, 1.75, 2.5, 3.5), (0.5, 1.5, 2.75, 3.5))[pattern]
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
                    b.add(part, p, t0 + 4 * bar + e / 2, 1.6, vel - 10 + accent, optional=e % 2)
        elif kind == "power":
            # Root, fifth and octave, chugged in eighths with the odd accent.
            root = (
                voicing[0] if voicing[0] % 12 == pcs[0] else voicing[0] - (voicing[0] - pcs[0]) % 12
            )
            chord = (root, root + 7, root + 12)
            for e in range(chord_beats * 2):
                accent = 14 if e % 8 in (0, 3, 6) else 0
                for p in chord:
                    b.add(part, p, t0 + e / 2, 0.42, vel - 6 + accent, jitter_ms=3)
        elif kind == "strum":
            # Down on the beat, up on the off-beat, the strings a few ms apart.
            downs = ((0, 1, 2, 3), (0, 1.5, 2, 3), (0, 1, 1.5, 2.5, 3))[pattern]
            for bar in range(chord_beats // 4):
                for s in downs:
                    up = s % 1 != 0
                    order = voicing[::-1] if up else voicing
                    for k, p in enumerate(order):
                        b.add(part, p, t0 + 4 * bar + s + 0.015 * k, 0.9, vel - (12 if up else 2))
        elif kind == "skank":
            for bar in range(chord_beats // 4):
                for s in (1.0, 3.0):
                    for p in voicing:
                        b.add(part, p, t0 + 4 * bar + s, 0.28, vel + 4, jitter_ms=3)
                for s in (0.5, 1.5, 2.5, 3.5):
                    for p in voicing[1:]:
                        b.add(part, p, t0 + 4 * bar + s, 0.18, vel - 16, optional=True)
        elif kind == "bossa":
            # Syncopated on the eighths, not the dotted eighths (those read as 4/3 time).
            hits = ((0, 0.5), (1, 0.4), (1.5, 0.75), (2.5, 0.4), (3, 0.75))
            for bar in range(chord_beats // 4):
                for s, length in hits:
                    for p in voicing[1:]:
                        b.add(part, p, t0 + 4 * bar + s, length, vel - 4)
        elif kind == "funk":
            steps = ((0, 0.75, 1.5, 2.25, 2.75, 3.5), (0, 0.5, 1.25, 2, 2.75, 3.25))[pattern % 2]
            for bar in range(chord_beats // 4):
                for s in steps:
                    for p in voicing[1:]:
                        b.add(part, p, t0 + 4 * bar + s, 0.14, vel + 2, jitter_ms=3)


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
            elif kind == "drone":
                # A pedal on the key's tonic, so the harmony moves over a held note.
                pedal = _near(tonic, 40, low + 2, high)
                b.add(part, pedal, t, 4.0, 70)
            elif kind == "reese":
                b.add(part, root, t, 3.9, 92, tight=True)
            elif kind == "reggae":
                b.add(part, root, t, 1.4, 100)
                b.add(part, fifth, t + 1.5, 0.45, 86)
                b.add(part, root + 12 if root + 12 <= high else root, t + 2.5, 0.45, 80)
                b.add(part, root, t + 3, 0.8, 90)
            elif kind == "bossa":
                b.add(part, root, t, 1.4, 94)
                b.add(part, fifth - 12 if fifth - 12 >= low else fifth, t + 1.5, 0.45, 80)
                b.add(part, fifth - 12 if fifth - 12 >= low else fifth, t + 2, 1.4, 86)
                b.add(part, root, t + 3.5, 0.45, 76)
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
    srng: np.random.Generator,
) -> None:
    """Arpeggios over the chords, or a melody built from a repeated, re-fitted motif.

    The shapes and the motif come from `srng`, the section's own generator, so a
    section sounds like itself each time it returns; the notes' steps vary per take.
    """
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
        shape = shapes[int(srng.integers(len(shapes)))]
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
                    optional=e % per_beat != 0,
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
    motif = [rhythms[int(srng.integers(len(rhythms)))] for _ in range(2)]
    answer = rhythms[int(srng.integers(len(rhythms)))]
    scale = sorted((tonic + i) % 12 for i in MODES[mode])
    pitches_in_range = [p for p in range(voice.low, voice.high + 1) if p % 12 in scale]
    pitch = float(_near(chords[0][0], (voice.low + voice.high) / 2, voice.low, voice.high))
    bars = int(np.ceil(total_beats / 4))
    for bar in range(bars):
        phrase_pos = bar % 4
        if phrase_pos == 3 and b.rng.random() < 0.5:
            continue  # breathe at the end of a phrase
        if phrase_pos in (1, 3) and b.rng.random() > b.density:
            continue  # sparser sections leave whole bars to the others
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
            b.add(
                part,
                int(pitch),
                beat,
                length * 0.95,
                82 + (8 if onset == 0 else 0),
                optional=onset != 0,
            )


def _phase(
    b: _Builder,
    part: int,
    voice: Voice,
    tonic: int,
    mode: str,
    identity: int,
    clip_start: float,
) -> None:
    """Layers of notes on their own timers, of unequal lengths, that phase for ever.

    As in Eno's Music for Airports: each layer repeats a short figure every P_k seconds,
    with periods that share no common beat, so the texture never repeats exactly. The
    timers run on the piece's clock (`clip_start` is this clip's place in the piece), so
    consecutive clips continue one another. Pitches come from the section's key: the
    tonic, second, third and fifth, which sit over any of its diatonic chords.
    """
    prng = np.random.default_rng([identity & 0xFFFFFFFF, 11])  # the piece's layers
    scale = MODES[mode]
    pcs = [(tonic + scale[d]) % 12 for d in (0, 1, 2, 4)]
    base = 60.0 / b.bpm * 4  # about a bar
    periods = [base * f for f in (1.53, 2.17, 2.91, 3.77)]
    for k, period in enumerate(periods):
        phase = float(prng.uniform(0, period))
        count = int(prng.integers(1, 4))
        figure = []
        for j in range(count):
            pc = pcs[int(prng.integers(len(pcs)))]
            pitch = _near(
                pc, voice.low + (voice.high - voice.low) * (0.3 + 0.15 * k), voice.low, voice.high
            )
            figure.append((j * float(prng.uniform(0.6, 1.4)), pitch))
        length = min(period * 0.7, 6.0)
        velocity = 64 - 5 * k
        first = int(np.floor((clip_start - phase - length) / period))
        last = int(np.ceil((clip_start + b.seconds - phase) / period))
        for n in range(first, last + 1):
            t = phase + n * period - clip_start
            for dt, pitch in figure:
                b.add_at(part, pitch, t + dt, length, velocity + float(b.rng.normal(0, 4)))
