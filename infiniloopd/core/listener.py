"""The listener interface for core events, like Mopidy's CoreListener.

`Session.add_listener(obj)` accepts any object with `on_event(name, data)`. Subclass
`CoreListener` to get `on_<name>(**data)` called instead for the events you define a
method for. Listeners run on the asyncio loop's thread and must not block.
"""

from __future__ import annotations

from typing import Any, Protocol


class Listener(Protocol):
    def on_event(self, name: str, data: dict[str, Any]) -> None: ...


class CoreListener:
    """Dispatches each event to `on_<name>(**data)` when the subclass defines one."""

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        method = getattr(self, f"on_{name}", None)
        if method is not None:
            method(**data)
