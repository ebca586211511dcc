"""The backend registry: outputs and generators register themselves with their config.

Each backend package (`infiniloopd.outputs`, `infiniloopd.generators`) registers its
backends when imported: a name, a builder taking the backend's config section, the
section and keys it reads, and the keys it cannot do without. The modules with heavy
imports (sound libraries, model runners) load only when their backend is built.
`build()` is then the one way to make a backend: unknown names and missing keys are
one-line errors naming the config key. Import-light (stdlib only).

The config schema (`infiniloopd.config`) stays free of backend imports; the test
suite checks that its backend names and required keys agree with what registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infiniloopd.errors import UserError


@dataclass(frozen=True)
class Backend:
    """A registered backend: what it is called, how it is built, what config it reads."""

    kind: str  # "output" or "generator"
    name: str
    build: Callable[..., Any]  # build(section_config, **options)
    section: str  # the config section it reads ("output", "generator")
    keys: tuple[str, ...] = ()  # the keys of that section it uses
    required: tuple[tuple[str, str], ...] = ()  # (key, what it must hold) when chosen

    def missing(self, section_cfg: Any) -> list[str]:
        """One line per required key that `section_cfg` leaves unset."""
        return [
            f"{self.section}.{key}: expected {what} for {self.section}.backend {self.name}"
            for key, what in self.required
            if getattr(section_cfg, key, None) in (None, "", [], ())
        ]


class Registry:
    """Backends by kind and name, in registration order."""

    def __init__(self) -> None:
        self._backends: dict[str, dict[str, Backend]] = {}

    def register(
        self,
        kind: str,
        name: str,
        *,
        section: str,
        keys: tuple[str, ...] = (),
        required: tuple[tuple[str, str], ...] = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register the decorated builder as backend `name` of `kind`."""

        def add(build: Callable[..., Any]) -> Callable[..., Any]:
            backends = self._backends.setdefault(kind, {})
            if name in backends:
                raise ValueError(f"{kind} backend {name!r} registered twice")
            backends[name] = Backend(kind, name, build, section, keys, required)
            return build

        return add

    def names(self, kind: str) -> tuple[str, ...]:
        return tuple(self._backends.get(kind, {}))

    def get(self, kind: str, name: str) -> Backend | None:
        return self._backends.get(kind, {}).get(name)

    def build(
        self,
        kind: str,
        name: str,
        section_cfg: Any,
        error: type[UserError] = UserError,
        **options: Any,
    ) -> Any:
        """Build backend `name` from its config section; `error` in one line if it cannot."""
        backend = self.get(kind, name)
        if backend is None:
            section = kind
            raise error(
                f"{section}.backend: expected one of {', '.join(self.names(kind))}, got {name!r}"
            )
        problems = backend.missing(section_cfg)
        if problems:
            raise error(problems[0])
        return backend.build(section_cfg, **options)


# The process's registry: written only while backend packages are imported.
REGISTRY = Registry()
register = REGISTRY.register
