"""Shared fixtures: real sound servers (see tests/audio_servers.py)."""

from tests.audio_servers import alsa_env, pipewire_server, pulse_server  # noqa: F401
