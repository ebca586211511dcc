"""Generator backends behind one small interface (see base.Generator)."""

from __future__ import annotations

from infiniloopd.config import GeneratorConfig
from infiniloopd.generators.base import Generator, GeneratorError, ProgressFn, validate_wav

__all__ = ["Generator", "GeneratorError", "ProgressFn", "make_generator", "validate_wav"]


def make_generator(cfg: GeneratorConfig) -> Generator:
    """The generator `cfg.backend` names; raises GeneratorError when it cannot be made."""
    if cfg.backend == "musicgpt":
        from infiniloopd.generators.musicgpt import MusicGPTGenerator

        return MusicGPTGenerator(cfg)
    if cfg.backend == "command":
        from infiniloopd.generators.command import CommandGenerator

        return CommandGenerator(cfg)
    if cfg.backend == "synth":
        # Imported lazily: it pulls in FluidSynth, which the other backends do not need.
        from infiniloopd.generators.synth import SynthGenerator

        return SynthGenerator(cfg.soundfont)
    raise GeneratorError(
        f"generator.backend: expected one of synth, musicgpt, command, got {cfg.backend!r}"
    )
