"""The form of a piece: which section a clip is, its key, its layers and its density.

Every clip of one prompt belongs to one piece (the prompt fixes tempo, home key and
feel); the clip index moves through the piece's form. Song styles cycle through A, B
and a bridge, with B in a related key (relative, dominant or subdominant) and a lift up
a step late in the form; drift styles (ambient) move more gently between neighbouring
keys. Layers enter and leave by section, and a slow density wave, with a period that
is not the form's length, rises and falls over minutes so no two passes are alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .styles import MINOR_LIKE

# Song form: (name, progression slot, key move, layers left out, density).
# Key moves: "home", "relative" (relative major/minor), "dominant", "subdominant", "lift".
SONG_FORM: tuple[tuple[str, int, str, frozenset[str], float], ...] = (
    ("A", 0, "home", frozenset({"pad"}), 0.85),
    ("A2", 0, "home", frozenset(), 1.0),
    ("B", 1, "other", frozenset({"lead"}), 1.0),
    ("A", 0, "home", frozenset({"pad"}), 0.9),
    ("bridge", 2, "subdominant", frozenset({"drums", "bass"}), 0.6),
    ("B", 1, "other", frozenset(), 1.1),
    ("A2", 0, "lift", frozenset(), 1.05),
    ("outro", 0, "home", frozenset({"lead", "drums"}), 0.7),
)
DRIFT_FORM: tuple[tuple[str, int, str, frozenset[str], float], ...] = (
    ("A", 0, "home", frozenset(), 0.9),
    ("B", 1, "dominant", frozenset({"bass"}), 0.8),
    ("A2", 0, "home", frozenset({"pad"}), 1.0),
    ("C", 2, "other", frozenset({"chords"}), 0.75),
    ("A", 0, "home", frozenset({"bass"}), 0.85),
    ("B", 1, "subdominant", frozenset(), 1.0),
)


@dataclass(frozen=True)
class Section:
    """Where a clip sits in its piece."""

    name: str  # A, A2, B, bridge, C, outro
    index: int  # position in the form
    progression: int  # which of the piece's progressions (0 home, 1 B, 2 bridge/C)
    tonic: int  # pitch class of this section's key
    mode: str
    silent: frozenset[str]  # roles that rest in this section (chords, pad, lead, bass, drums)
    density: float  # 0.5..1.3: how many of the optional notes play


def _relative(tonic: int, mode: str) -> tuple[int, str]:
    if mode in MINOR_LIKE:
        return (tonic + 3) % 12, "major"
    return (tonic + 9) % 12, "minor"


def section_for(clip: int, tonic: int, mode: str, drift: bool, identity: int) -> Section:
    """The section of clip number `clip` (0, 1, 2, ...) of a piece in `tonic` `mode`."""
    form = DRIFT_FORM if drift else SONG_FORM
    index = clip % len(form)
    name, slot, move, silent, density = form[index]
    # Which related key "other" means is the piece's own choice, fixed by the prompt.
    other = ("relative", "dominant", "subdominant")[(identity >> 40) % 3]
    if move == "other":
        move = other
    key, key_mode = tonic, mode
    if move == "relative":
        key, key_mode = _relative(tonic, mode)
    elif move == "dominant":
        key = (tonic + 7) % 12
    elif move == "subdominant":
        key = (tonic + 5) % 12
    elif move == "lift":
        key = (tonic + 2) % 12
    # A slow wave over the whole piece (period 5.3 clips, about two minutes of clips).
    wave = 1 + 0.18 * math.sin(2 * math.pi * clip / 5.3 + (identity % 628) / 100)
    return Section(name, index, slot, key, key_mode, silent, density * wave)
