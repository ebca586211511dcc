"""Reading audio files, with one-line errors that name the file and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from infiniloopd.errors import UserError


def read_reason(exc: Exception) -> str:
    """libsndfile's reason without its "Error opening '<path>': " prefix (we name the path)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.split("': ", 1)[-1] if text.startswith("Error opening") else text


def read_audio(
    path: Path, *, always_2d: bool = False, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode `path` to float32 samples and its rate, or raise UserError saying why not.

    With `max_seconds`, the header is checked first: a file that claims more is refused
    before anything is decoded into memory.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    try:
        if max_seconds is not None:
            info = sf.info(str(path))
            if info.samplerate <= 0 or info.frames / info.samplerate > max_seconds:
                raise UserError(
                    f"{path}: {info.frames} frames at {info.samplerate} Hz, "
                    f"expected at most {max_seconds:g} s"
                )
        data, rate = sf.read(str(path), dtype="float32", always_2d=always_2d)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read audio: {read_reason(exc)}") from None
    return data, rate
