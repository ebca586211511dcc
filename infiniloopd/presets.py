"""Mood presets: a name for a prompt plus optional generator settings.

The shipped presets live in `infiniloopd/data/presets.yaml` (the repo's
`config/presets.yaml`); the user's `$XDG_CONFIG_HOME/infiniloop/presets.yaml` adds to
them and may redefine any. Both are validated with one-line errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from infiniloopd import paths
from infiniloopd.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    load_yaml,
    parse_config,
    read_text_file,
)
from infiniloopd.errors import UserError
from infiniloopd.text import text_problem

PRESETS_FILE = "presets.yaml"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Generator settings a preset may change; the backend and binaries stay the user's choice.
PRESET_GENERATOR_KEYS = ("model", "seconds")


class PresetError(UserError):
    """A presets file that cannot be used."""


@dataclass
class Preset:
    name: str
    prompt: str
    description: str = ""
    generator: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prompt": self.prompt,
            "description": self.description,
            "generator": dict(self.generator),
            "source": self.source,
        }


def builtin_presets_text() -> str:
    return (resources.files("infiniloopd") / "data" / PRESETS_FILE).read_text(encoding="utf-8")


def user_presets_path() -> Path:
    return paths.config_dir() / PRESETS_FILE


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_presets(data: Any, where: str) -> dict[str, Preset]:
    """Validate parsed YAML into presets; raises PresetError naming file, preset and key."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PresetError(f"{where}: expected a mapping of preset names, got {_show(data)}")
    out: dict[str, Preset] = {}
    for name, body in data.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PresetError(
                f"{where}: {_show(name)}: expected a preset name of lowercase letters, digits, "
                "- and _ (at most 40)"
            )
        if isinstance(body, str):
            body = {"prompt": body}
        if not isinstance(body, dict):
            raise PresetError(f"{where}: {name}: expected a prompt or a mapping, got {_show(body)}")
        unknown = set(body) - {"prompt", "description", "generator"}
        if unknown:
            key = sorted(map(str, unknown))[0]
            raise PresetError(
                f"{where}: {name}.{key}: unknown key (known keys: description, generator, prompt)"
            )
        prompt = body.get("prompt")
        if text_problem(prompt, max_len=1000) is not None:
            raise PresetError(
                f"{where}: {name}.prompt: expected a non-empty prompt of at most 1000 chars, "
                f"got {_show(prompt)}"
            )
        description = body.get("description", "")
        if text_problem(description, max_len=1000, nonempty=False) is not None:
            raise PresetError(
                f"{where}: {name}.description: expected text, got {_show(description)}"
            )
        gen = body.get("generator") or {}
        if not isinstance(gen, dict):
            raise PresetError(f"{where}: {name}.generator: expected a mapping, got {_show(gen)}")
        for key in gen:
            if key not in PRESET_GENERATOR_KEYS:
                raise PresetError(
                    f"{where}: {name}.generator.{key}: not settable by a preset "
                    f"(allowed: {', '.join(PRESET_GENERATOR_KEYS)})"
                )
        try:
            # The config schema knows the ranges; its message names the key path.
            checked = parse_config({"generator": gen}, f"{where}: {name}").generator
        except ConfigError as exc:
            raise PresetError(str(exc)) from None
        generator = {key: getattr(checked, key) for key in gen}
        out[name] = Preset(name, prompt.strip(), description.strip(), generator, where)
    return out


def _load_text(text: str, where: str) -> dict[str, Preset]:
    # The config's bounded loader: no aliases, bounded depth, one-line errors.
    return parse_presets(load_yaml(text, where, PresetError), where)


def load_presets(user_path: Path | None = None) -> dict[str, Preset]:
    """The shipped presets, overlaid with the user's (a missing user file is fine)."""
    presets = _load_text(builtin_presets_text(), "presets.yaml (built in)")
    path = user_path or user_presets_path()
    if not path.exists():
        return presets
    text = read_text_file(path, MAX_CONFIG_BYTES, PresetError)
    presets.update(_load_text(text, str(path)))
    return presets
