"""The built-in `synth` generator: a procedural composer rendered with a GM SoundFont.

The package itself stays import-light (the daemon imports `process`, which must not
pull in scipy or FluidSynth); the renderer is loaded on first use of its names.
"""

from typing import Any

from .constants import DEFAULT_SOUNDFONTS, INSTALL_HINT, SR

__all__ = ["DEFAULT_SOUNDFONTS", "INSTALL_HINT", "SR", "SynthGenerator"]


def __getattr__(name: str) -> Any:
    if name == "SynthGenerator":
        from .generator import SynthGenerator

        return SynthGenerator
    raise AttributeError(name)
