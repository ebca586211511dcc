"""Drum patterns of the styles, and how a pattern becomes the notes of a clip."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .styles import (
    CLAP,
    CLOSED_HAT,
    CONGA_HI,
    CONGA_LO,
    CRASH,
    KICK,
    LOW_TOM,
    MID_TOM,
    OPEN_HAT,
    PEDAL_HAT,
    RIDE,
    RIM,
    SHAKER,
    SNARE,
    TAMBOURINE,
)

if TYPE_CHECKING:
    from .composer import _Builder

# Drum patterns: instrument -> list of (sixteenth step in a bar, velocity). Hats, rides
# and shakers stay well below the kick and snare: loud cymbal samples are the harshest
# sounds in a General MIDI kit.
DRUMS: dict[str, dict[int, list[tuple[int, int]]]] = {
    "techno": {
        KICK: [(0, 118), (4, 118), (8, 118), (12, 118)],
        CLAP: [(4, 88), (12, 92)],
        OPEN_HAT: [(2, 58), (6, 60), (10, 58), (14, 62)],
        CLOSED_HAT: [(s, 34 + 10 * (s % 2 == 0)) for s in range(16)],
    },
    "lofi": {
        KICK: [(0, 100), (7, 70), (10, 92)],
        SNARE: [(4, 84), (12, 88)],
        CLOSED_HAT: [(s, 48 if s % 4 == 0 else 36) for s in range(0, 16, 2)],
    },
    "chill": {
        KICK: [(0, 96), (6, 64), (8, 90)],
        RIM: [(4, 58), (12, 62)],
        SHAKER: [(s, 40 if s % 2 else 50) for s in range(16)],
    },
    "jazz": {
        RIDE: [(0, 50), (4, 58), (6, 40), (8, 50), (12, 60), (14, 42)],
        PEDAL_HAT: [(4, 50), (12, 52)],
        KICK: [(0, 50), (8, 44)],
    },
    "brush": {
        SNARE: [(0, 40), (4, 58), (6, 36), (8, 42), (12, 60), (14, 38)],
        KICK: [(0, 56), (8, 48)],
        PEDAL_HAT: [(4, 44), (12, 46)],
    },
    "cinematic": {
        KICK: [(0, 96), (8, 84)],
        LOW_TOM: [(12, 70), (14, 82)],
        MID_TOM: [(4, 60), (6, 64)],
    },
    "chiptune": {
        KICK: [(0, 110), (6, 96), (8, 108)],
        SNARE: [(4, 100), (12, 104)],
        CLOSED_HAT: [(s, 52 if s % 4 == 0 else 40) for s in range(0, 16, 2)],
    },
    "synthwave": {
        KICK: [(0, 112), (4, 100), (8, 112), (12, 100)],
        SNARE: [(4, 104), (12, 108)],
        CLOSED_HAT: [(s, 46 if s % 4 == 2 else 32) for s in range(16)],
    },
    "morning": {
        KICK: [(0, 96), (8, 86), (10, 70)],
        SNARE: [(4, 80), (12, 84)],
        SHAKER: [(s, 50 if s % 4 == 2 else 38) for s in range(0, 16, 2)],
    },
    "focus": {
        KICK: [(0, 84), (8, 74)],
        RIM: [(4, 56), (12, 60)],
        SHAKER: [(s, 36 if s % 2 else 46) for s in range(16)],
    },
    "rock": {
        KICK: [(0, 112), (8, 106), (10, 92)],
        SNARE: [(4, 110), (12, 112)],
        CLOSED_HAT: [(s, 54 if s % 4 == 0 else 42) for s in range(0, 16, 2)],
    },
    "metal": {
        KICK: [(s, 104 if s % 4 == 0 else 92) for s in range(0, 16, 2)],
        SNARE: [(4, 118), (12, 118)],
        CLOSED_HAT: [(s, 50) for s in range(0, 16, 4)],
    },
    "bossa": {
        KICK: [(0, 84), (6, 56), (8, 84), (14, 56)],
        RIM: [(0, 50), (3, 40), (6, 46), (10, 44), (12, 48)],
        SHAKER: [(s, 50 if s % 4 == 0 else 30) for s in range(16)],
        PEDAL_HAT: [(4, 50), (12, 50)],
    },
    "onedrop": {
        KICK: [(8, 106)],
        RIM: [(8, 64)],
        SNARE: [(8, 46)],
        CLOSED_HAT: [(s, 44 if s % 4 == 2 else 34) for s in range(0, 16, 2)],
    },
    "disco": {
        KICK: [(0, 112), (4, 110), (8, 112), (12, 110)],
        SNARE: [(4, 96), (12, 100)],
        OPEN_HAT: [(2, 52), (6, 54), (10, 52), (14, 56)],
        CLOSED_HAT: [(s, 30) for s in range(0, 16, 2)],
    },
    "house": {
        KICK: [(0, 116), (4, 116), (8, 116), (12, 116)],
        CLAP: [(4, 88), (12, 92)],
        OPEN_HAT: [(2, 56), (6, 58), (10, 56), (14, 60)],
        SHAKER: [(s, 30) for s in range(1, 16, 2)],
    },
    "dnb": {
        KICK: [(0, 114), (10, 106)],
        SNARE: [(4, 112), (12, 112), (7, 38), (15, 34)],
        CLOSED_HAT: [(s, 46 if s % 4 == 0 else 34) for s in range(0, 16, 2)],
    },
    "folk": {
        KICK: [(0, 80), (8, 74)],
        TAMBOURINE: [(4, 54), (12, 58)],
        SHAKER: [(s, 40 if s % 4 == 0 else 30) for s in range(0, 16, 2)],
    },
    "shuffle": {
        KICK: [(0, 88), (8, 82), (10, 58)],
        SNARE: [(4, 88), (12, 92)],
        CLOSED_HAT: [(s, 48 if s % 4 == 0 else 36) for s in range(0, 16, 2)],
    },
    "latin": {
        CONGA_HI: [(3, 56), (6, 60), (11, 56), (14, 60)],
        CONGA_LO: [(0, 66), (8, 62)],
        SHAKER: [(s, 34) for s in range(0, 16, 2)],
    },
}
TIGHT_DRUMS = ("techno", "synthwave", "chiptune", "house", "disco", "dnb", "metal")


def drums(b: _Builder, part: int, pattern_name: str, total_beats: int, start: int) -> None:
    """The style's drum pattern, with the odd fill and ghost note (`start`: clip's beat)."""
    pattern = DRUMS[pattern_name]
    bars = math.ceil(total_beats / 4)
    tight = pattern_name in TIGHT_DRUMS
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
                    optional=key in (CLOSED_HAT, SHAKER, OPEN_HAT) and step % 4 != 0,
                )
        if fill:
            tom = SNARE if pattern_name not in ("jazz", "brush", "cinematic") else MID_TOM
            for step in (12, 13, 14, 15):
                b.add(part, tom, bar * 4 + step / 4, 0.2, 50 + 8 * (step - 12), jitter_ms=3)
        if pattern_name not in ("cinematic", "brush") and b.rng.random() < 0.25:
            b.add(part, SNARE, bar * 4 + float(b.rng.choice((1.75, 3.25, 2.75))), 0.1, 28)
    if pattern_name in ("synthwave", "cinematic", "chiptune", "rock", "metal"):
        b.add(part, CRASH, start, 2, 64)
