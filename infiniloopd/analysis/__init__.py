"""The loop engine: find, render and level seamless loops (pure functions, arrays in and out).

Nothing here imports the rest of infiniloopd. Audio is float, shape (frames,) or
(frames, channels); errors a user's input can cause are AnalysisError (a ValueError
with a one-line message).
"""

from .errors import AnalysisError
from .grid import BeatGrid
from .loop import DEFAULT_CROSSFADE_MS, GridHint, LoopPoints, find_loop
from .loudness import limit_peaks, measure_lufs, normalize_loudness
from .pipeline import analyse_clip, map_channels
from .render import crossfade_gains, render_loop, rotate_loop
from .resample import resample
from .validate import validate_clip

analyze_clip = analyse_clip

__all__ = [
    "DEFAULT_CROSSFADE_MS",
    "AnalysisError",
    "BeatGrid",
    "GridHint",
    "LoopPoints",
    "analyse_clip",
    "analyze_clip",
    "crossfade_gains",
    "find_loop",
    "limit_peaks",
    "map_channels",
    "measure_lufs",
    "normalize_loudness",
    "render_loop",
    "resample",
    "rotate_loop",
    "validate_clip",
]
