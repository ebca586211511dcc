"""The backend registry: every output and generator registered with its config section,
in agreement with the config schema, and built through it with one-line errors."""

from __future__ import annotations

import dataclasses

import pytest

import infiniloopd.generators
import infiniloopd.outputs  # noqa: F401  (registers the outputs)
from infiniloopd.config import (
    GENERATOR_BACKENDS,
    OUTPUT_BACKENDS,
    ConfigError,
    GeneratorConfig,
    OutputConfig,
    parse_config,
)
from infiniloopd.errors import UserError
from infiniloopd.generators import GeneratorError, make_generator
from infiniloopd.outputs import make_output
from infiniloopd.outputs.null import NullOutput
from infiniloopd.registry import REGISTRY, Registry

SECTIONS = {"output": OutputConfig, "generator": GeneratorConfig}


def test_registered_backends_are_the_configs_choices():
    assert REGISTRY.names("output") == OUTPUT_BACKENDS
    assert REGISTRY.names("generator") == GENERATOR_BACKENDS


@pytest.mark.parametrize("kind", ["output", "generator"])
def test_every_backend_declares_keys_of_its_own_section(kind):
    fields = {f.name for f in dataclasses.fields(SECTIONS[kind])}
    for name in REGISTRY.names(kind):
        backend = REGISTRY.get(kind, name)
        assert backend.section == kind
        assert set(backend.keys) <= fields, (name, set(backend.keys) - fields)
        assert {key for key, _ in backend.required} <= fields


@pytest.mark.parametrize("kind", ["output", "generator"])
def test_a_missing_required_key_is_refused_in_the_same_words(kind):
    """At load where the config checks it, else when the backend is built."""
    build = {"output": make_output, "generator": make_generator}[kind]
    checked = 0
    for name in REGISTRY.names(kind):
        backend = REGISTRY.get(kind, name)
        for key, what in backend.required:
            words = f"{kind}.{key}: expected {what}"
            try:
                cfg = parse_config({kind: {"backend": name}})
            except ConfigError as exc:
                assert words in str(exc), (name, key)
            else:
                with pytest.raises(UserError) as info:
                    build(getattr(cfg, kind))
                assert str(info.value).startswith(words), (name, key)
            checked += 1
    assert checked >= 2


def test_build_through_the_registry():
    out = make_output(parse_config({"output": {"backend": "null"}}).output)
    assert isinstance(out, NullOutput)
    bare = OutputConfig(backend="file")  # what the config would have refused
    with pytest.raises(UserError, match=r"^output\.path: expected a WAV file path for output"):
        make_output(bare)
    with pytest.raises(GeneratorError, match=r"^generator\.command: expected a command list"):
        make_generator(GeneratorConfig(backend="command"))
    with pytest.raises(GeneratorError, match="generator.backend: expected one of synth, "):
        make_generator(GeneratorConfig(backend="nope"))


def test_a_name_registers_once():
    reg = Registry()
    reg.register("output", "x", section="output")(lambda cfg: cfg)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("output", "x", section="output")(lambda cfg: cfg)
    assert reg.build("output", "x", 5) == 5
