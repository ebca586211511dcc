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
    if cfg.backend == "musicgpt-server":
        from infiniloopd.generators.musicgpt_server import MusicGPTServerGenerator

        return MusicGPTServerGenerator(cfg)
    if cfg.backend == "command":
        from infiniloopd.generators.command import CommandGenerator

        return CommandGenerator(cfg)
    if cfg.backend == "synth":
        # The composer itself runs in a child process (see synth/process.py).
        from infiniloopd.generators.synth.process import SynthProcessGenerator

        return SynthProcessGenerator(cfg)
    raise GeneratorError(
        "generator.backend: expected one of synth, musicgpt, musicgpt-server, command, "
        f"got {cfg.backend!r}"
    )
