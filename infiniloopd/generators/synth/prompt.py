"""Reading a prompt: style, tempo, instruments, negations and mood words -> a typed Spec.

Pure and deterministic. Words match whole (with plurals), never inside longer words:
"nest" is not "nes", "housework" is not "house". Negated phrases ("no drums", "without
piano") are removed before anything else is read, so "no piano" never picks the piano.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .styles import DEFAULT_STYLES, KEYWORD_TIERS, MOOD_WORDS, STYLES, Style

# Instruments a prompt can name: words -> (GM program, role it prefers).
# Roles: chords (keys, plucked), lead (winds, brass, solo strings, voices, lead synths),
# pad (ensembles, pads, choirs), bass.
INSTRUMENTS: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (("electric piano", "e piano", "rhodes", "wurlitzer", "epiano"), 4, "chords"),
    (("upright bass", "double bass", "acoustic bass", "walking bass"), 32, "bass"),
    (("slap bass",), 36, "bass"),
    (("synth bass", "bassline", "sub bass", "808"), 38, "bass"),
    (("electric bass", "bass guitar", "bass"), 33, "bass"),
    (("electric guitar", "clean guitar", "jazz guitar"), 27, "chords"),
    (("distorted guitar", "heavy guitar", "guitar riff"), 30, "chords"),
    (("nylon guitar", "classical guitar", "spanish guitar"), 24, "chords"),
    (("acoustic guitar", "guitar", "guitars"), 25, "chords"),
    (("piano", "grand piano", "felt piano", "keys"), 0, "chords"),
    (("harpsichord",), 6, "chords"),
    (("music box",), 10, "lead"),
    (("celesta",), 8, "lead"),
    (("glockenspiel",), 9, "lead"),
    (("vibraphone", "vibes"), 11, "lead"),
    (("marimba",), 12, "lead"),
    (("bells", "bell", "chimes", "tubular bells", "singing bowl"), 14, "lead"),
    (("hammond", "organ", "church organ"), 19, "chords"),
    (("accordion",), 21, "chords"),
    (("harmonica",), 22, "lead"),
    (("ukulele",), 24, "chords"),
    (("violin", "fiddle"), 40, "lead"),
    (("viola",), 41, "lead"),
    (("cello",), 42, "lead"),
    (("harp",), 46, "chords"),
    (("strings", "string section", "orchestra"), 48, "pad"),
    (("choir", "voices", "choral", "vocals", "vocal"), 52, "pad"),
    (("trumpet",), 56, "lead"),
    (("trombone",), 57, "lead"),
    (("horn", "horns", "french horn", "brass"), 60, "pad"),
    (("saxophone", "sax", "tenor sax", "alto sax"), 66, "lead"),
    (("oboe",), 68, "lead"),
    (("clarinet",), 71, "lead"),
    (("flute", "flutes", "pan flute"), 73, "lead"),
    (("synth", "synths", "synthesizer", "lead synth"), 81, "lead"),
    (("pad", "pads", "synth pad", "warm pad"), 89, "pad"),
    (("sitar",), 104, "chords"),
    (("banjo",), 105, "chords"),
    (("kalimba",), 108, "lead"),
    (("steel drum", "steel drums", "steel pan"), 114, "lead"),
)
# Refusing a family word refuses the whole family: "without piano" also means no e-piano.
FAMILIES: dict[int, range] = {
    0: range(0, 8),  # piano
    25: range(24, 32),  # guitar
    81: range(80, 88),  # synth
    89: range(88, 96),  # pads
    48: range(40, 52),  # strings
    19: range(16, 24),  # organ
    14: range(8, 16),  # bells and mallets
    60: range(56, 64),  # brass
}
DRUM_WORDS = ("drum", "drums", "beat", "beats", "percussion", "kick", "drumming", "rhythm")
ONLY_WORDS = ("only", "solo", "just", "alone", "unaccompanied")
NEGATIONS = ("no", "without", "minus", "sans", "zero", "except", "not", "nor")

DARK = ("dark", "sad", "melancholy", "melancholic", "gloomy", "moody", "minor", "sombre")
DARK += ("somber", "mysterious", "tense", "haunting", "eerie", "lonely", "spooky")
BRIGHT = ("happy", "bright", "sunny", "uplifting", "cheerful", "joyful", "major", "hopeful")
BRIGHT += ("summer", "playful", "triumphant")
SLOW = ("slow", "slower", "lazy", "slowly", "sleepy", "unhurried", "lethargic")
FAST = ("fast", "faster", "upbeat", "energetic", "driving", "uptempo", "frantic", "intense")
SOFT = ("soft", "quiet", "gentle", "mellow", "delicate", "hushed", "tender", "calm")
LOUD = ("loud", "powerful", "aggressive", "hard", "heavy", "punchy")
SPARSE = ("sparse", "minimal", "minimalist", "simple", "bare", "sparse")
DENSE = ("dense", "busy", "rich", "lush", "layered", "full", "complex")
DREAMY = ("dreamy", "ethereal", "hazy", "floating", "spacey", "dreamlike", "airy", "reverb")


@dataclass(frozen=True)
class Instrument:
    """An instrument the prompt names: the words it was named by, program and role."""

    name: str
    program: int
    role: str


@dataclass(frozen=True)
class Spec:
    """What a prompt asks for, read once; the composer works from this alone."""

    text: str  # the normalized prompt
    identity: int  # stable hash of the text: the piece's fixed choices
    style: Style
    matched: str  # the word that chose the style, "mood" or "hash"
    bpm: float | None = None  # an explicit tempo, used exactly
    instruments: tuple[Instrument, ...] = ()
    excluded_programs: frozenset[int] = frozenset()  # GM programs the prompt refused
    no_drums: bool = False
    no_bass: bool = False
    only: bool = False  # "piano only", "solo guitar": nothing but what is named
    dark: bool = False
    bright: bool = False
    tempo_scale: float = 1.0
    velocity_shift: int = 0
    register_shift: int = 0
    density: float = 1.0
    dreamy: bool = False
    textures: tuple[str, ...] = field(default=())  # "rain", "vinyl"


def stable_hash(text: str) -> int:
    """A stable hash: Python's hash() is salted per process, this one is not."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def normalize_prompt(prompt: str) -> str:
    """Lower case words and numbers; "&" reads "and", hyphens split ("lo-fi" = "lo fi")."""
    text = prompt.lower().replace("&", " and ").replace("'n'", " n ").replace("-", " ")
    return " ".join(re.findall(r"[a-z0-9]+", text))


def _pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(r"(?<![a-z0-9])(?:" + alts + r")(?:s|es)?(?![a-z0-9])")


def has_word(text: str, words: tuple[str, ...]) -> bool:
    """True if one of `words` occurs whole (a plural s/es allowed) in normalized text."""
    return _pattern(words).search(text) is not None


def _find(text: str, words: tuple[str, ...]) -> re.Match[str] | None:
    return _pattern(words).search(text)


_NEGATED = re.compile(
    r"(?<![a-z0-9])(?:" + "|".join(NEGATIONS) + r")\s+((?:[a-z0-9]+\s*){1,4}?)"
    r"(?=\s*(?:[,.;:!?]|$|\bwith\b|\bbut\b|\band\s+(?:a|an|the|some|soft|warm)\b))"
)


def split_negations(prompt: str) -> tuple[str, list[str]]:
    """The prompt without its negated phrases, and those phrases (normalized)."""
    raw = prompt.lower().replace("&", " and ").replace("-", " ")
    negated: list[str] = []

    def take(m: re.Match[str]) -> str:
        negated.append(normalize_prompt(m.group(1)))
        return " "

    kept = _NEGATED.sub(take, raw)
    return normalize_prompt(kept), negated


def _tempo(text: str) -> float | None:
    m = re.search(r"(?<![0-9])(\d{2,3}(?:\.\d+)?)\s*(?:bpm|beats per minute|beats a minute)", text)
    if m is None:
        return None
    return min(max(float(m.group(1)), 30.0), 240.0)


def choose_style_spec(text: str) -> tuple[Style, str]:
    """The style normalized text asks for, and the word (or "mood"/"hash") that chose it."""
    for tier in KEYWORD_TIERS:
        best: tuple[int, str, str] | None = None
        for rank, (name, words) in enumerate(tier):
            m = _find(text, words)
            if m is not None and (best is None or rank < best[0]):
                best = (rank, name, m.group(0))
        if best is not None:
            return STYLES[best[1]], best[2]
    moods = [MOOD_WORDS[w] for w in text.split() if w in MOOD_WORDS]
    if moods:
        v = sum(m[0] for m in moods) / len(moods)
        e = sum(m[1] for m in moods) / len(moods)
        style = min(
            STYLES.values(),
            key=lambda s: ((s.mood[0] - v) ** 2 + (s.mood[1] - e) ** 2, s.name),
        )
        return style, "mood"
    return STYLES[DEFAULT_STYLES[stable_hash(text) % len(DEFAULT_STYLES)]], "hash"


def _instruments(text: str) -> list[Instrument]:
    """Named instruments in prompt order; the longest name wins where names overlap."""
    # Genre phrases that contain instrument words are not instruments.
    text = re.sub(r"\b(drum (and|n) bass|bass drums?|bass heavy|piano house)\b", " ", text)
    found: list[tuple[int, int, Instrument]] = []
    taken: list[tuple[int, int]] = []
    entries = [(w, prog, role) for words, prog, role in INSTRUMENTS for w in words]
    for word, prog, role in sorted(entries, key=lambda e: -len(e[0])):
        for m in _pattern((word,)).finditer(text):
            if any(m.start() < b and a < m.end() for a, b in taken):
                continue
            taken.append((m.start(), m.end()))
            found.append((m.start(), prog, Instrument(word, prog, role)))
    found.sort(key=lambda f: f[0])
    out: list[Instrument] = []
    for _, prog, inst in found:
        if all(i.program != prog for i in out):
            out.append(inst)
    return out


def parse(prompt: str) -> Spec:
    """Read a prompt into a Spec (pure; the same prompt always gives the same Spec)."""
    full = normalize_prompt(prompt)
    text, negated = split_negations(prompt)
    style, matched = choose_style_spec(text)
    neg_text = " ".join(negated)
    excluded = frozenset(
        p for i in _instruments(neg_text) for p in FAMILIES.get(i.program, (i.program,))
    )
    named = [i for i in _instruments(text) if i.program not in excluded]
    no_drums = has_word(neg_text, DRUM_WORDS)
    no_bass = any(i.role == "bass" for i in _instruments(neg_text))
    only = has_word(text, ONLY_WORDS) and bool(named)
    if only:
        no_drums = no_drums or not has_word(text, DRUM_WORDS)
        no_bass = no_bass or not any(i.role == "bass" for i in named)
    dark, bright = has_word(text, DARK), has_word(text, BRIGHT)
    if dark and bright:
        bright = False
    tempo_scale = 1.0
    if has_word(text, SLOW) or re.search(r"\bslow tempo\b", text):
        tempo_scale = 0.88
    elif has_word(text, FAST):
        tempo_scale = 1.12
    velocity = -14 if has_word(text, SOFT) else (10 if has_word(text, LOUD) else 0)
    register = -5 if dark else (5 if bright else 0)
    density = 0.55 if has_word(text, SPARSE) else (1.3 if has_word(text, DENSE) else 1.0)
    textures = []
    if has_word(text, ("rain", "rainy", "raining", "storm", "stormy")):
        textures.append("rain")
    if has_word(text, ("vinyl", "tape", "dusty", "crackle", "cassette")):
        textures.append("vinyl")
    return Spec(
        text=full,
        identity=stable_hash(full),
        style=style,
        matched=matched,
        bpm=_tempo(prompt.lower()),
        instruments=tuple(named),
        excluded_programs=excluded,
        no_drums=no_drums,
        no_bass=no_bass,
        only=only,
        dark=dark,
        bright=bright,
        tempo_scale=tempo_scale,
        velocity_shift=velocity,
        register_shift=register,
        density=density,
        dreamy=has_word(text, DREAMY),
        textures=tuple(textures),
    )
