"""Shared fixtures: real sound servers (see tests/audio_servers.py), the FluidSynth synth."""

import pytest

from infiniloopd.generators.synth import DEFAULT_SOUNDFONTS, SynthGenerator
from tests.audio_servers import alsa_env, pipewire_server, pulse_server  # noqa: F401


@pytest.fixture(scope="module")
def fluid() -> SynthGenerator:
    """The synth generator rendering with FluidSynth and a GM SoundFont (skip without)."""
    if not any(p.is_file() for p in DEFAULT_SOUNDFONTS):
        pytest.skip("no General MIDI SoundFont installed (apt-get install fluid-soundfont-gm)")
    gen = SynthGenerator()
    gen.load()
    if gen.model == "numpy":
        pytest.skip("FluidSynth could not be loaded")
    yield gen
    gen.close()
