"""The style table: what each style plays, and the words that select it (pure data).

A style is a recipe (tempo range, modes, progressions, instrument parts and how they
play, drum pattern, finishing fx) plus where it sits on a mood plane (valence, energy),
so a prompt that names no style still lands near its mood.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# General MIDI drum keys (channel 10).
KICK, RIM, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, RIDE_BELL, SHAKER = 45, 47, 50, 49, 51, 53, 70
TAMBOURINE, COWBELL, CLAVES, CONGA_HI, CONGA_LO, ELECTRIC_SNARE = 54, 56, 75, 62, 64, 40
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
    # chords: sustain|stab|pulse|lofi|charleston|broken|power|strum|skank|bossa|funk
    # lead: arp8|arp16|melody|phase (notes on their own timers, for ambient styles)
    kind: str
    volume: int = 100  # MIDI CC7
    low: int = 55  # register for chord voicings / melodies
    high: int = 76


@dataclass(frozen=True)
class Style:
    """A musical recipe the words of a prompt select."""

    name: str
    bpm: tuple[int, int]
    modes: tuple[str, ...]
    major_progressions: tuple[tuple[int, ...], ...]
    minor_progressions: tuple[tuple[int, ...], ...]
    chords: Voice | None
    bass: Voice | None  # kind: sustain|pulse|offbeat|lofi|walking|pop|octaves|reggae|drone
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
    mood: tuple[float, float] = (0.0, 0.0)  # valence, energy in -1..1
    fixed_tempo: bool = False  # mood words do not move it (the genre is its tempo)
    drift: bool = False  # ambient form: phasing layers, gentle sections


# Progressions as scale degrees, one chord a bar, no chord twice in a row (the last one
# leads back to the first too), so any four bars hold at least three changes.
MAJOR_POP = ((0, 4, 5, 3), (0, 5, 3, 4), (3, 0, 4, 5), (0, 3, 5, 4), (5, 3, 0, 4))
MINOR_POP = ((0, 5, 2, 6), (0, 3, 5, 4), (0, 6, 5, 4), (5, 6, 0, 4), (0, 5, 3, 6))
JAZZ_MAJOR = ((1, 4, 0, 5), (0, 5, 1, 4), (2, 5, 1, 4), (3, 2, 1, 0))
JAZZ_MINOR = ((3, 6, 2, 5), (0, 3, 6, 2), (1, 4, 0, 5))
AMBIENT_MAJOR = ((0, 3, 5, 3), (0, 5, 3, 4), (3, 0, 4, 5), (0, 2, 3, 4))
AMBIENT_MINOR = ((0, 5, 3, 6), (0, 3, 5, 6), (5, 3, 0, 6), (0, 6, 5, 3))
ROCK_MAJOR = ((0, 4, 5, 3), (0, 6, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4))
ROCK_MINOR = ((0, 5, 6, 4), (0, 6, 5, 6), (0, 3, 5, 6), (0, 5, 2, 6))
BLUES = ((0, 3, 0, 4), (0, 3, 4, 3), (4, 3, 0, 3))
MINIMAL_MINOR = ((0, 5, 6, 4), (0, 3, 5, 6), (0, 6, 3, 4))

_S = Style
STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        _S(
            "ambient",
            (66, 76),
            ("major", "minor"),
            AMBIENT_MAJOR,
            AMBIENT_MINOR,
            chords=Voice(89, "sustain", 84, 52, 72),
            bass=Voice(48, "sustain", 90),
            lead=Voice(88, "phase", 100, 64, 86),
            pad=Voice(49, "sustain", 73, 60, 79),
            sevenths=True,
            humanize=0.6,
            fx=Fx(reverb_mix=0.42, reverb_seconds=4.5, lowpass_hz=9000, hiss=0.15),
            mood=(0.2, -0.8),
            drift=True,
        ),
        _S(
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
            fx=Fx(0.16, 1.3, 4200, wow=1.6, crackle=0.6, hiss=0.35, saturation=0.35),
            mood=(0.1, -0.2),
        ),
        _S(
            "chill",
            (84, 96),
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
            mood=(0.4, -0.3),
        ),
        _S(
            "techno",
            (125, 130),
            ("minor",),
            MINIMAL_MINOR,
            MINIMAL_MINOR,
            chords=Voice(81, "stab", 110, 57, 72),
            bass=Voice(38, "offbeat", 91),
            lead=Voice(87, "arp16", 80, 60, 79),
            pad=Voice(90, "sustain", 90, 55, 72),
            drums="techno",
            drum_volume=56,
            drum_kit=25,
            humanize=0.3,
            fx=Fx(reverb_mix=0.14, reverb_seconds=1.4),
            mood=(-0.2, 0.8),
            fixed_tempo=True,
        ),
        _S(
            "jazz",
            (104, 132),
            ("major",),
            JAZZ_MAJOR,
            JAZZ_MINOR,
            chords=Voice(0, "charleston", 79, 52, 71),
            bass=Voice(32, "walking", 54),
            lead=Voice(66, "melody", 54, 62, 80),
            drums="jazz",
            drum_volume=92,
            drum_kit=32,
            swing=0.66,
            sevenths=True,
            humanize=1.3,
            fx=Fx(reverb_mix=0.14, reverb_seconds=1.5),
            mood=(0.5, 0.3),
        ),
        _S(
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
            mood=(-0.2, 0.5),
        ),
        _S(
            "chiptune",
            (132, 150),
            ("major", "minor"),
            MAJOR_POP,
            MINOR_POP,
            chords=None,
            bass=Voice(81, "octaves", 110),
            lead=Voice(80, "arp16", 80, 60, 84),
            pad=Voice(80, "melody", 65, 72, 88),
            drums="chiptune",
            drum_volume=61,
            drum_kit=25,
            humanize=0.0,
            fx=Fx(reverb_mix=0.06, reverb_seconds=0.6),
            mood=(0.8, 0.8),
        ),
        _S(
            "piano",
            (72, 92),
            ("major", "minor"),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(0, "broken", 94, 43, 64),
            bass=None,
            lead=Voice(0, "melody", 120, 64, 84),
            humanize=1.2,
            fx=Fx(reverb_mix=0.22, reverb_seconds=2.2),
            mood=(0.0, -0.5),
        ),
        _S(
            "rain",
            (66, 78),
            ("minor", "major"),
            AMBIENT_MAJOR,
            MINOR_POP,
            chords=Voice(0, "broken", 105, 45, 66),
            bass=None,
            lead=Voice(0, "phase", 110, 64, 84),
            pad=Voice(49, "sustain", 50, 55, 72),
            sevenths=True,
            humanize=1.2,
            fx=Fx(reverb_mix=0.3, reverb_seconds=2.6, lowpass_hz=8000, rain=0.7),
            mood=(-0.3, -0.6),
            drift=True,
        ),
        _S(
            "synthwave",
            (96, 112),
            ("minor",),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(90, "sustain", 120, 55, 74),
            bass=Voice(38, "pulse", 100),
            lead=Voice(81, "arp16", 100, 64, 84),
            pad=Voice(62, "stab", 101, 60, 76),
            drums="synthwave",
            drum_volume=75,
            drum_kit=25,
            humanize=0.4,
            fx=Fx(reverb_mix=0.26, reverb_seconds=2.4),
            mood=(0.1, 0.5),
        ),
        _S(
            "morning",
            (92, 108),
            ("major", "mixolydian"),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(25, "strum", 68, 52, 71),
            bass=Voice(32, "pop", 72),
            lead=Voice(73, "melody", 57, 67, 86),
            pad=Voice(0, "broken", 52, 60, 79),
            drums="morning",
            drum_volume=100,
            fx=Fx(reverb_mix=0.18, reverb_seconds=1.6),
            mood=(0.8, 0.1),
        ),
        _S(
            "focus",
            (84, 96),
            ("dorian", "major"),
            AMBIENT_MAJOR,
            AMBIENT_MINOR,
            chords=Voice(90, "pulse", 64, 53, 72),
            bass=Voice(38, "sustain", 60),
            lead=Voice(98, "arp8", 56, 62, 80),
            pad=Voice(89, "sustain", 37, 57, 74),
            drums="focus",
            drum_volume=80,
            sevenths=True,
            humanize=0.7,
            fx=Fx(reverb_mix=0.24, reverb_seconds=2.2, lowpass_hz=8000),
            mood=(0.1, -0.3),
        ),
        _S(
            "evening",
            (76, 88),
            ("major", "dorian"),
            JAZZ_MAJOR,
            JAZZ_MINOR,
            chords=Voice(0, "charleston", 62, 52, 72),
            bass=Voice(32, "walking", 60),
            lead=Voice(11, "melody", 61, 64, 82),
            drums="brush",
            drum_volume=85,
            drum_kit=40,
            swing=0.62,
            sevenths=True,
            humanize=1.2,
            fx=Fx(reverb_mix=0.22, reverb_seconds=1.9, lowpass_hz=9000),
            mood=(0.4, -0.3),
        ),
        _S(
            "night",
            (60, 70),
            ("minor", "dorian"),
            AMBIENT_MAJOR,
            AMBIENT_MINOR,
            chords=Voice(89, "sustain", 65, 48, 68),
            bass=Voice(33, "drone", 78),
            lead=Voice(0, "phase", 110, 60, 78),
            pad=Voice(95, "sustain", 58, 55, 74),
            sevenths=True,
            humanize=0.8,
            fx=Fx(reverb_mix=0.38, reverb_seconds=3.8, lowpass_hz=6000, hiss=0.1),
            mood=(-0.6, -0.7),
            drift=True,
        ),
        _S(
            "rock",
            (112, 136),
            ("major", "mixolydian", "minor"),
            ROCK_MAJOR,
            ROCK_MINOR,
            chords=Voice(29, "power", 92, 40, 60),
            bass=Voice(34, "pulse", 96),
            lead=Voice(30, "melody", 78, 60, 80),
            drums="rock",
            drum_volume=108,
            humanize=0.7,
            fx=Fx(reverb_mix=0.14, reverb_seconds=1.4, saturation=0.4),
            mood=(0.2, 0.8),
        ),
        _S(
            "metal",
            (140, 168),
            ("minor",),
            ROCK_MINOR,
            ROCK_MINOR,
            chords=Voice(30, "power", 100, 38, 57),
            bass=Voice(34, "pulse", 96),
            lead=Voice(30, "melody", 84, 62, 84),
            drums="metal",
            drum_volume=112,
            humanize=0.4,
            fx=Fx(reverb_mix=0.12, reverb_seconds=1.3, saturation=0.7),
            mood=(-0.7, 1.0),
        ),
        _S(
            "bossa",
            (124, 140),
            ("major", "dorian"),
            JAZZ_MAJOR,
            JAZZ_MINOR,
            chords=Voice(24, "bossa", 96, 50, 69),
            bass=Voice(32, "bossa", 80),
            lead=Voice(73, "melody", 70, 67, 86),
            drums="bossa",
            drum_volume=84,
            sevenths=True,
            humanize=1.0,
            fx=Fx(reverb_mix=0.18, reverb_seconds=1.6),
            mood=(0.6, 0.1),
        ),
        _S(
            "reggae",
            (72, 84),
            ("major", "minor"),
            ((0, 3, 4, 3), (0, 5, 3, 4), (3, 4, 0, 5)),
            ((0, 6, 5, 6), (0, 3, 6, 4), (0, 5, 3, 6)),
            chords=Voice(16, "skank", 82, 55, 72),
            bass=Voice(33, "reggae", 108),
            lead=Voice(26, "melody", 60, 62, 80),
            drums="onedrop",
            drum_volume=100,
            humanize=0.9,
            fx=Fx(reverb_mix=0.2, reverb_seconds=1.8),
            mood=(0.7, 0.0),
        ),
        _S(
            "funk",
            (108, 122),
            ("dorian", "mixolydian"),
            ((0, 3, 0, 4), (0, 5, 3, 4)),
            ((0, 3, 0, 4), (0, 6, 3, 4)),
            chords=Voice(28, "funk", 84, 55, 74),
            bass=Voice(36, "octaves", 96),
            lead=Voice(61, "melody", 72, 62, 82),
            drums="disco",
            drum_volume=104,
            sevenths=True,
            humanize=0.6,
            fx=Fx(reverb_mix=0.12, reverb_seconds=1.2),
            mood=(0.8, 0.6),
        ),
        _S(
            "house",
            (120, 126),
            ("minor", "dorian", "major"),
            MAJOR_POP,
            MINIMAL_MINOR,
            chords=Voice(0, "stab", 100, 57, 76),
            bass=Voice(38, "offbeat", 94),
            lead=Voice(81, "arp8", 70, 64, 84),
            pad=Voice(89, "sustain", 70, 55, 74),
            drums="house",
            drum_volume=90,
            drum_kit=25,
            sevenths=True,
            humanize=0.3,
            fx=Fx(reverb_mix=0.16, reverb_seconds=1.6),
            mood=(0.5, 0.7),
            fixed_tempo=True,
        ),
        _S(
            "dnb",
            (170, 176),
            ("minor",),
            MINIMAL_MINOR,
            MINIMAL_MINOR,
            chords=None,
            bass=Voice(38, "reese", 100),
            lead=Voice(88, "arp8", 70, 62, 84),
            pad=Voice(89, "sustain", 80, 55, 74),
            drums="dnb",
            drum_volume=104,
            drum_kit=25,
            sevenths=True,
            humanize=0.2,
            fx=Fx(reverb_mix=0.18, reverb_seconds=2.0),
            mood=(-0.1, 0.9),
            fixed_tempo=True,
        ),
        _S(
            "classical",
            (66, 92),
            ("major", "minor"),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(48, "broken", 84, 50, 70),
            bass=Voice(42, "sustain", 86),
            lead=Voice(40, "melody", 96, 64, 86),
            pad=Voice(49, "sustain", 60, 55, 74),
            humanize=1.1,
            fx=Fx(reverb_mix=0.3, reverb_seconds=2.8),
            mood=(0.1, -0.1),
        ),
        _S(
            "folk",
            (88, 112),
            ("major", "mixolydian"),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(25, "strum", 92, 50, 70),
            bass=Voice(32, "pop", 74),
            lead=Voice(40, "melody", 64, 64, 84),
            drums="folk",
            drum_volume=80,
            humanize=1.1,
            fx=Fx(reverb_mix=0.16, reverb_seconds=1.5),
            mood=(0.5, 0.0),
        ),
        _S(
            "blues",
            (72, 96),
            ("mixolydian",),
            BLUES,
            BLUES,
            chords=Voice(0, "charleston", 78, 50, 70),
            bass=Voice(33, "walking", 70),
            lead=Voice(27, "melody", 86, 60, 82),
            drums="shuffle",
            drum_volume=90,
            swing=0.66,
            sevenths=True,
            humanize=1.2,
            fx=Fx(reverb_mix=0.16, reverb_seconds=1.5),
            mood=(-0.3, 0.0),
        ),
        _S(
            "meditation",
            (54, 62),
            ("major", "dorian"),
            AMBIENT_MAJOR,
            AMBIENT_MINOR,
            chords=None,
            bass=Voice(89, "drone", 86),
            lead=Voice(14, "phase", 80, 60, 84),
            pad=Voice(91, "sustain", 70, 55, 72),
            humanize=0.5,
            fx=Fx(reverb_mix=0.45, reverb_seconds=5.0, lowpass_hz=7000),
            mood=(0.1, -1.0),
            drift=True,
        ),
        _S(
            "lullaby",
            (60, 72),
            ("major",),
            MAJOR_POP,
            MINOR_POP,
            chords=Voice(8, "broken", 70, 55, 74),
            bass=None,
            lead=Voice(10, "melody", 100, 67, 86),
            pad=Voice(49, "sustain", 50, 55, 72),
            humanize=0.8,
            fx=Fx(reverb_mix=0.3, reverb_seconds=2.6, lowpass_hz=9000),
            mood=(0.5, -0.9),
        ),
    )
}

# Words that select a style, in tiers: the first tier that has a match decides, and
# inside a tier the earliest style in the list. Places and times of day the presets are
# built around come first ("mellow evening jazz" is the evening style), then genres, then
# the quiet catch-alls, then scenes and occasions, then instruments. Words match whole,
# with plurals.
KEYWORD_TIERS: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...] = (
    (
        ("morning", ("morning", "sunrise", "dawn", "breakfast", "wake up", "waking up")),
        ("evening", ("evening", "sunset", "dusk", "twilight", "lounge")),
        ("focus", ("focus", "focused", "study", "studying", "concentration", "deep work")),
        ("rain", ("rain", "rainfall", "raindrop", "rainstorm", "storm", "thunderstorm")),
    ),
    (
        ("techno", ("techno", "trance", "edm", "rave", "warehouse")),
        ("house", ("house", "deep house", "tech house", "garage")),
        ("dnb", ("drum and bass", "drum n bass", "dnb", "d and b", "jungle", "dubstep")),
        ("chiptune", ("chiptune", "8 bit", "8bit", "16 bit", "retro game", "video game")),
        ("chiptune", ("arcade", "nes", "gameboy")),
        ("synthwave", ("synthwave", "synth wave", "retrowave", "outrun", "80s", "vaporwave")),
        ("metal", ("metal", "heavy metal", "metalcore", "thrash", "doom")),
        ("rock", ("rock", "punk", "grunge", "indie rock", "alternative", "power chord")),
        ("funk", ("funk", "funky", "disco", "groove", "soul", "motown")),
        ("reggae", ("reggae", "ska", "dub", "dancehall", "rocksteady")),
        ("bossa", ("bossa", "bossa nova", "bossanova", "latin", "samba", "salsa", "brazilian")),
        ("blues", ("blues", "bluesy", "delta blues", "boogie")),
        ("jazz", ("jazz", "jazzy", "swing", "bebop", "big band", "cocktail")),
        ("lofi", ("lofi", "lo fi", "hip hop", "hiphop", "boom bap", "beat tape", "chillhop")),
        ("chill", ("chill", "chillout", "downtempo", "trip hop", "relax", "relaxing")),
        ("cinematic", ("cinematic", "orchestral", "epic", "trailer", "film", "soundtrack")),
        ("classical", ("classical", "baroque", "chamber", "string quartet", "symphony")),
        ("folk", ("folk", "country", "acoustic", "bluegrass", "campfire", "americana")),
        ("lullaby", ("lullaby", "music box", "nursery", "cradle", "baby")),
    ),
    (
        ("night", ("night", "nighttime", "midnight", "sleep", "sleepy", "nocturne")),
        ("meditation", ("meditation", "meditative", "meditate", "zen", "yoga", "drone")),
        ("meditation", ("singing bowl", "mindfulness", "breathing")),
        ("ambient", ("ambient", "atmospheric", "space", "spacey", "soundscape", "drift")),
    ),
    (
        # Scenes and occasions people name instead of a genre.
        ("house", ("party", "club", "dancefloor", "workout", "gym", "fitness", "k pop", "kpop")),
        ("dnb", ("running", "jogging", "sprint", "racing", "chase")),
        ("synthwave", ("cyberpunk", "futuristic", "sci fi", "scifi", "neon", "night drive")),
        (
            "cinematic",
            ("halloween", "horror", "haunted", "creepy", "spooky", "battle", "adventure"),
        ),
        ("reggae", ("beach", "tropical", "island", "hawaiian", "caribbean", "summer")),
        ("bossa", ("cafe", "coffee", "coffee shop", "tango", "brunch", "cocktail bar")),
        ("lofi", ("trap", "rap", "drill", "homework")),
        ("chill", ("rnb", "r and b", "neo soul", "sunday", "afternoon", "lazy sunday")),
        ("folk", ("celtic", "irish", "scottish", "medieval", "tavern", "shanty", "western")),
        ("folk", ("cowboy", "forest", "woods", "cabin", "road trip", "travel")),
        ("blues", ("gospel", "whiskey", "saloon", "bar")),
        ("classical", ("opera", "waltz", "church", "hymn", "renaissance", "elegant")),
        ("lullaby", ("christmas", "xmas", "holiday", "carol", "winter", "snow", "kids")),
        ("lullaby", ("children", "childrens", "toy", "fairy tale", "bedtime")),
        ("meditation", ("spa", "massage", "wellness", "raga", "indian", "japanese", "temple")),
        ("ambient", ("ocean", "underwater", "waves", "sea", "nature", "cosmos", "galaxy")),
        ("morning", ("pop", "birds", "garden", "spring", "sunshine", "coffee morning")),
        ("evening", ("fireplace", "dinner", "wine", "candlelight", "restaurant")),
        ("funk", ("afrobeat", "afro", "african", "carnival")),
    ),
    (
        ("piano", ("piano", "keys", "felt piano", "grand piano")),
        ("rock", ("electric guitar", "distorted guitar")),
        ("folk", ("guitar", "banjo", "ukulele", "mandolin", "fiddle", "harmonica")),
        ("classical", ("violin", "cello", "strings", "viola", "harp", "harpsichord")),
        ("classical", ("flute", "oboe", "clarinet", "bassoon", "orchestra", "choir")),
        ("synthwave", ("synth", "synthesizer", "analog synth")),
        ("jazz", ("sax", "saxophone", "trumpet", "vibraphone", "double bass")),
        ("blues", ("organ", "hammond")),
        ("lullaby", ("bells", "celesta", "glockenspiel", "kalimba", "marimba")),
    ),
)

# A prompt that names no style still has moods: words on the valence/energy plane.
MOOD_WORDS: dict[str, tuple[float, float]] = {
    "dark": (-0.8, 0.0),
    "sad": (-0.8, -0.3),
    "melancholy": (-0.7, -0.3),
    "melancholic": (-0.7, -0.3),
    "gloomy": (-0.7, -0.2),
    "moody": (-0.5, 0.0),
    "mysterious": (-0.4, -0.1),
    "tense": (-0.5, 0.4),
    "angry": (-0.8, 0.9),
    "aggressive": (-0.7, 1.0),
    "heavy": (-0.5, 0.8),
    "spooky": (-0.7, 0.1),
    "eerie": (-0.7, -0.2),
    "haunting": (-0.6, -0.3),
    "cold": (-0.4, -0.2),
    "lonely": (-0.6, -0.5),
    "happy": (0.8, 0.3),
    "bright": (0.6, 0.2),
    "sunny": (0.8, 0.2),
    "cheerful": (0.8, 0.4),
    "joyful": (0.9, 0.5),
    "hopeful": (0.6, 0.1),
    "uplifting": (0.7, 0.4),
    "romantic": (0.6, -0.2),
    "warm": (0.4, -0.2),
    "cozy": (0.5, -0.4),
    "peaceful": (0.4, -0.7),
    "calm": (0.3, -0.6),
    "gentle": (0.3, -0.6),
    "soft": (0.2, -0.5),
    "quiet": (0.0, -0.6),
    "dreamy": (0.3, -0.5),
    "slow": (0.0, -0.5),
    "lazy": (0.3, -0.5),
    "fast": (0.0, 0.7),
    "energetic": (0.3, 0.8),
    "upbeat": (0.6, 0.6),
    "intense": (-0.3, 0.9),
    "driving": (0.0, 0.8),
    "party": (0.7, 0.8),
    "dance": (0.5, 0.7),
    "dancing": (0.5, 0.7),
    "groovy": (0.6, 0.5),
    "playful": (0.8, 0.4),
    "triumphant": (0.6, 0.8),
    "nostalgic": (0.2, -0.3),
}

# Unknown prompts without a mood word land on one of these, by a stable hash.
DEFAULT_STYLES = ("chill", "lofi", "ambient", "piano", "focus", "evening", "morning")
