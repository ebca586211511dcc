"""Generator backends behind one small interface (see base.Generator)."""

from __future__ import annotations

from infiniloopd.config import GeneratorConfig
from infiniloopd.generators.base import Generator, GeneratorError, ProgressFn, validate_wav
from infiniloopd.registry import REGISTRY, register

__all__ = ["Generator", "GeneratorError", "ProgressFn", "make_generator", "validate_wav"]


def make_generator(cfg: GeneratorConfig) -> Generator:
    """The generator `cfg.backend` names; raises GeneratorError when it cannot be made."""
    return REGISTRY.build("generator", cfg.backend, cfg, GeneratorError)


# --- the generator backends, registered in the order config lists them -----------------

_COMMON = ("seconds", "timeout", "nice", "idle_priority")


@register("generator", "synth", section="generator", keys=(*_COMMON, "soundfont"))
def _synth(cfg: GeneratorConfig) -> Generator:
    # The composer itself runs in a child process (see synth/process.py).
    from infiniloopd.generators.synth.process import SynthProcessGenerator

    return SynthProcessGenerator(cfg)


@register(
    "generator",
    "musicgpt",
    section="generator",
    keys=(*_COMMON, "binary", "model", "gpu", "use_split_decoder", "force_download"),
)
def _musicgpt(cfg: GeneratorConfig) -> Generator:
    from infiniloopd.generators.musicgpt import MusicGPTGenerator

    return MusicGPTGenerator(cfg)


@register(
    "generator",
    "musicgpt-server",
    section="generator",
    keys=(*_COMMON, "servers"),
    required=(("servers", "a list of MusicGPT server URLs"),),
)
def _musicgpt_server(cfg: GeneratorConfig) -> Generator:
    from infiniloopd.generators.musicgpt_server import MusicGPTServerGenerator

    return MusicGPTServerGenerator(cfg)


@register(
    "generator",
    "command",
    section="generator",
    keys=(*_COMMON, "command"),
    required=(("command", "a command list"),),
)
def _command(cfg: GeneratorConfig) -> Generator:
    from infiniloopd.generators.command import CommandGenerator

    return CommandGenerator(cfg)
