"""The built-in `synth` generator: a procedural composer rendered with a GM SoundFont."""

from .generator import DEFAULT_SOUNDFONTS, SR, SynthGenerator

__all__ = ["DEFAULT_SOUNDFONTS", "SR", "SynthGenerator"]
