"""The ZeroMQ frontend: the control socket's commands translated to Session calls.

Every request is validated against the command table (`commands.COMMANDS`), handed
to the Session, and its result shaped as the protocol's reply. Every event the
Session emits is published on the event socket. No logic lives here.
"""

from __future__ import annotations

import os
from typing import Any

from infiniloopd import __version__, paths, protocol
from infiniloopd.core.session import Session
from infiniloopd.errors import UserError
from infiniloopd.frontends.zmq.commands import COMMANDS
from infiniloopd.frontends.zmq.server import Command, ControlServer


class ZmqFrontend:
    """The control socket (`infiniloopctl`'s way in) and the event socket."""

    def __init__(self, session: Session, endpoint_override: str | None = None) -> None:
        self.session = session
        cfg = session.cfg
        endpoints = protocol.resolve_endpoints(endpoint_override, cfg.control.endpoint)
        for path in (endpoints.control_path, endpoints.events_path):
            if path is not None:
                paths.ensure_private_dir(path.parent)
        curve = allowed = None
        if cfg.control.curve_secret_key_file is not None:
            curve = protocol.read_curve_key(cfg.control.curve_secret_key_file, secret=True)
        if cfg.control.curve_allowed_keys_dir is not None:
            allowed = protocol.read_allowed_keys(cfg.control.curve_allowed_keys_dir)
        elif not endpoints.is_ipc:
            # $INFINILOOP_ENDPOINT or --endpoint may make it tcp:// after the config check.
            raise UserError(
                f"{endpoints.control}: a tcp:// endpoint needs control.curve_allowed_keys_dir "
                "(the client public keys allowed in)"
            )
        self.server = ControlServer(
            endpoints, self._commands(), curve_secret=curve, curve_allowed=allowed
        )
        # Registered at once, so the event numbering starts with the session's first event.
        session.add_listener(self)

    # --- frontend -------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the sockets (UserError when an endpoint cannot be used)."""
        self.server.start()

    def serve(self) -> Any:
        """The coroutine answering requests until close()."""
        return self.server.serve()

    async def close(self) -> None:
        """Let commands in progress answer, then close the sockets."""
        self.session.remove_listener(self)
        await self.server.drain()  # a `save` in progress finishes and answers
        self.server.close()

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        self.server.publish(name, data)

    # --- commands -------------------------------------------------------------------

    def _commands(self) -> dict[str, Command]:
        table = {}
        for spec in COMMANDS:
            handler = getattr(self, "cmd_" + spec.name.replace("-", "_"))
            table[spec.name] = Command(spec.name, handler, spec.args, spec.help)
        return table

    def _status(self) -> dict[str, Any]:
        return {**self.session.status(), "last_seq": self.server.last_seq}

    def _with_status(self) -> dict[str, Any]:
        return {"status": self._status()}

    def cmd_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        return self._status()

    def cmd_play(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.session.play()
        return self._with_status()

    def cmd_pause(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.session.pause()
        return self._with_status()

    def cmd_toggle(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.session.toggle()
        return self._with_status()

    def cmd_stop(self, _args: dict[str, Any]) -> dict[str, Any]:
        self.session.stop()
        return self._with_status()

    async def cmd_next(self, _args: dict[str, Any]) -> dict[str, Any]:
        result = await self.session.next()
        if result.pending:
            return {**self._with_status(), "pending": True, "message": result.message}
        return {**self._with_status(), "pending": False}

    def cmd_prompt(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.session
        if args["text"] is None:
            return {"prompt": s.prompt, "preset": s.preset}
        dropped = s.set_prompt(args["text"], keep=bool(args["keep"]))
        return {"prompt": s.prompt, "dropped": dropped}

    def cmd_preset(self, args: dict[str, Any]) -> dict[str, Any]:
        preset = self.session.apply_preset(args["name"])
        return {"preset": preset.name, "prompt": preset.prompt, "generator": preset.generator}

    def cmd_presets(self, _args: dict[str, Any]) -> dict[str, Any]:
        presets = self.session.presets()
        return {
            "presets": [p.to_json() for _, p in sorted(presets.items())],
            "current": self.session.preset,
        }

    def cmd_volume(self, args: dict[str, Any]) -> dict[str, Any]:
        value = args["value"]
        if value is not None:
            if isinstance(value, tuple):  # ("delta", n)
                value = self.session.volume + value[1]
            self.session.set_volume(value)
        return {"volume": self.session.volume}

    def cmd_crossfade(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["seconds"] is not None:
            self.session.set_crossfade(args["seconds"])
        return {"crossfade": self.session.settings.crossfade}

    def cmd_min_play(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["seconds"] is not None:
            self.session.set_min_play(args["seconds"])
        return {"min_play": self.session.settings.min_play}

    def cmd_model(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["name"] is None:
            return self.session.generator_settings()
        return self.session.set_model(args["name"])

    def cmd_duration(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["seconds"] is None:
            return self.session.generator_settings()
        return self.session.set_duration(args["seconds"])

    def cmd_generator(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["name"] is None:
            return self.session.generator_settings()
        return self.session.set_generator(args["name"])

    async def cmd_save(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.session.save(args["path"], force=bool(args["force"]))

    def cmd_queue(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"entries": self.session.queue()}

    def cmd_history(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"entries": self.session.history_entries()}

    def cmd_library(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.session.library_summary(20 if args["limit"] is None else args["limit"])

    def cmd_sleep(self, args: dict[str, Any]) -> dict[str, Any]:
        value = args["duration"]
        if value is not None:
            self.session.sleep(parse_duration_arg(value))
        return {"sleep": self.session.sleep_status()}

    def cmd_schedule(self, args: dict[str, Any]) -> dict[str, Any]:
        count = 10 if args["count"] is None else args["count"]
        return {"firings": self.session.schedule(count)}

    async def cmd_reload(self, _args: dict[str, Any]) -> dict[str, Any]:
        return await self.session.reload()

    def cmd_events(self, args: dict[str, Any]) -> dict[str, Any]:
        since = args["since"] or 0
        return {"events": self.server.events_since(since), "last_seq": self.server.last_seq}

    def cmd_ping(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "pid": os.getpid()}

    def cmd_version(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {"version": __version__, "protocol": protocol.VERSION}

    def cmd_help(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            "commands": {
                c.name: {"help": c.help, "args": [a.name for a in c.args]}
                for c in self.server.commands.values()
            }
        }


def parse_duration_arg(value: str | float) -> float | None:
    """The `sleep` argument as seconds, or None for "off" (InvalidValue otherwise)."""
    from infiniloopd.core.sleep import parse_duration

    if isinstance(value, str):
        return parse_duration(value, "sleep")
    return parse_duration(str(value), "sleep")
