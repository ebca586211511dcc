"""`infiniloopctl`: send one command to infiniloopd and print the answer.

Exit status: 0 ok, 1 the daemon refused (message on stderr), 2 usage error,
3 the daemon is not running or did not answer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import zmq

from infiniloopd import __version__, paths, protocol
from infiniloopd.errors import UserError
from infiniloopd.frontends.zmq.commands import (
    COMMANDS,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    Arg,
    exit_status,
)
from infiniloopd.protocol import ProtocolError
from infiniloopd.text import terminal_safe

START_HINT = "start it with `systemctl --user start infiniloop` or run `infiniloopd`"


class NotRunning(Exception):
    """The daemon cannot be reached; the message says why and how to start it."""


# --- talking to the daemon --------------------------------------------------------------


class Client:
    def __init__(self, endpoints: protocol.Endpoints, timeout: float, discovered: bool) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        # True when the endpoint is the default one, so the lock file tells if a daemon runs.
        self.discovered = discovered
        self.ctx = zmq.Context()

    def close(self) -> None:
        self.ctx.destroy(linger=0)

    def _secure(self, sock: zmq.Socket, endpoint: str) -> None:
        if not endpoint.startswith("tcp://"):
            return
        key = os.environ.get(protocol.SERVER_KEY_ENV, "")
        if key and Path(key).is_file():
            key = protocol.read_curve_key(Path(key), secret=False).decode()
        if len(key) != 40:
            raise UserError(
                f"{endpoint}: a tcp:// endpoint needs the daemon's CURVE public key in "
                f"${protocol.SERVER_KEY_ENV} (the 40-character key, or a file holding it)"
            )
        client_key = os.environ.get(protocol.CLIENT_KEY_ENV, "")
        if not client_key:
            raise UserError(
                f"{endpoint}: a tcp:// endpoint needs your CURVE secret key file in "
                f"${protocol.CLIENT_KEY_ENV} (its public key in the daemon's "
                "control.curve_allowed_keys_dir)"
            )
        secret = protocol.read_curve_key(Path(client_key), secret=True)
        public = zmq.curve_public(secret)
        sock.curve_serverkey = key.encode()
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def check_running(self) -> None:
        path = self.endpoints.control_path
        if path is not None and not path.exists():
            raise NotRunning(f"the daemon is not running (no socket at {path}); {START_HINT}")
        if self.discovered and path is not None and protocol.running_pid() is None:
            raise NotRunning(f"the daemon is not running (stale socket {path}); {START_HINT}")
        if self.discovered and path is not None:
            # The default place may be a /tmp fallback someone else created first.
            paths.check_own_socket(path)

    def request(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; the result, or ProtocolError for a refusal, NotRunning."""
        self.check_running()
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            self._secure(sock, self.endpoints.control)
            sock.connect(self.endpoints.control)
            sock.send(protocol.encode_request(cmd, args))
            if not sock.poll(int(self.timeout * 1000), zmq.POLLIN):
                raise NotRunning(
                    f"no answer from the daemon at {self.endpoints.control} within "
                    f"{self.timeout:g} s; is it running? ({START_HINT})"
                )
            return protocol.decode_reply(sock.recv())
        finally:
            sock.close(0)


# --- formatting -------------------------------------------------------------------------


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{text} {unit}".rstrip()


def status_line(st: dict[str, Any]) -> str:
    parts = [st.get("state", "?")]
    loop = st.get("loop")
    played = st.get("loops_played", 0)
    queue = st.get("queue", 0)
    if loop:
        parts.append(f"loop {played}/{played + queue}")
        parts.append(f"{fmt_time(loop.get('position'))}/{fmt_time(loop.get('seconds'))}")
    else:
        parts.append("no loop yet")
    parts.append(f"vol {st.get('volume', '?')}%")
    if st.get("generating"):
        progress = st.get("progress")
        pct = f" {progress * 100:.0f}%" if isinstance(progress, (int, float)) else ""
        parts.append(f"generating{pct}")
    parts.append(f"queue {queue}")
    if st.get("skip_pending"):
        parts.append("next pending")
    sleep = st.get("sleep")
    if isinstance(sleep, dict) and isinstance(sleep.get("remaining"), (int, float)):
        parts.append(f"sleep {fmt_time(sleep['remaining'])}")
    if st.get("consecutive_failures"):
        parts.append(f"failing x{st['consecutive_failures']}")
    parts.append(json.dumps(st.get("prompt", ""), ensure_ascii=False))
    return "  ".join(parts)


def server_line(srv: dict[str, Any]) -> str:
    """One MusicGPT server of the musicgpt-server backend, for status -v."""
    state = "connected" if srv.get("connected") else "not connected"
    if srv.get("retry_in"):
        state = f"resting {fmt_num(srv['retry_in'], 's')}"
    known = f"{srv.get('model')} on {srv.get('device')}" if srv.get("model") else "not seen yet"
    rtf = srv.get("realtime_factor")
    speed = (
        f", mean {fmt_num(srv.get('mean_seconds'), 's')}, {fmt_num(rtf)}x realtime"
        if rtf is not None
        else ""
    )
    line = (
        f"server:     {srv.get('url')}  {known}  {state}, {srv.get('busy', 0)} busy, "
        f"{srv.get('sent', 0)} sent, {srv.get('failures', 0)} failed{speed}"
    )
    if srv.get("last_error"):
        line += f"  (last: {srv['last_error']})"
    return line


def status_verbose(st: dict[str, Any]) -> str:
    lines = [status_line(st)]
    preset = f"  (preset {st['preset']})" if st.get("preset") else ""
    lines.append(f"prompt:     {st.get('prompt', '')}{preset}")
    loop = st.get("loop")
    if loop:
        lines.append(
            f"loop:       {loop.get('id')}  bpm {fmt_num(loop.get('bpm'))}  "
            f"{fmt_num(loop.get('seconds'), 's')}  repeats {loop.get('repeats', 0)}  "
            f"played {fmt_time(loop.get('played'))}  ({loop.get('prompt', '')})"
        )
    gen = st.get("generator", {})
    doing = (
        f"generating {st['progress'] * 100:.0f}% ({st.get('phase') or 'working'})"
        if st.get("generating") and isinstance(st.get("progress"), (int, float))
        else ("generating" if st.get("generating") else "idle")
    )
    uses = gen.get("uses")
    what = {
        "musicgpt": f"model {uses or gen.get('model')}, ",
        "synth": f"soundfont {uses}, " if uses else "",
        "command": f"{uses}, " if uses else "",
        "musicgpt-server": f"model {uses}, " if uses else "",
    }.get(gen.get("backend"), "")
    clips = f"{fmt_num(gen.get('seconds'), 's')} clips"
    lines.append(f"generator:  {gen.get('backend')} ({what}{clips})  {doing}")
    for srv in gen.get("servers") or []:
        lines.append(server_line(srv))
    for model, s in sorted((st.get("stats") or {}).items()):
        lines.append(
            f"stats:      {model}: {s.get('clips', 0)} clips, mean "
            f"{fmt_num(s.get('mean_seconds'), 's')}, "
            f"{fmt_num(s.get('realtime_factor'))}x realtime"
        )
    fails = (
        f"failures:   {st.get('failures', 0)} total, {st.get('consecutive_failures', 0)} in a row"
    )
    if st.get("last_error"):
        fails += f"  (last: {st['last_error']})"
    if st.get("fallback"):
        fails += "  [falling back to the library]"
    lines.append(fails)
    lines.append(
        f"playback:   crossfade {fmt_num(st.get('crossfade'), 's')}, "
        f"min-play {fmt_num(st.get('min_play'), 's')}"
    )
    lib = st.get("library", {})
    lines.append(f"library:    {lib.get('loops', 0)} loops, {fmt_num(lib.get('mb'), 'MB')}")
    ok = "ok" if st.get("output_ok", True) else "FAILING"
    lines.append(
        f"output:     {st.get('output')} ({ok}, {st.get('xruns', 0)} xruns, "
        f"{st.get('stalls', 0)} stalls)"
    )
    outputs = st.get("outputs") or []
    if len(outputs) > 1:  # several at once: each with its own state
        for o in outputs:
            error = f": {o['error']}" if o.get("error") else ""
            lines.append(
                f"  - {o.get('description')} ({o.get('state')}{error}, "
                f"{o.get('underruns', 0)} underruns)"
            )
    lines.append(
        f"daemon:     pid {st.get('pid')}, worker pid {st.get('worker_pid')}, "
        f"up {fmt_time(st.get('uptime'))}, config {st.get('config')}"
    )
    return "\n".join(lines)


def entry_line(i: int, e: dict[str, Any]) -> str:
    return (
        f"{i:3d}. {e.get('id')}  {fmt_num(e.get('seconds'), 's'):>7}  "
        f"bpm {fmt_num(e.get('bpm')):>5}  {e.get('prompt', '')}"
    )


def render(cmd: str, result: dict[str, Any], args: argparse.Namespace) -> str | None:
    """Human output for a command's result (None prints nothing)."""
    if cmd == "status":
        return status_verbose(result) if args.verbose else status_line(result)
    if cmd == "next" and result.get("pending"):
        return result.get("message") or "next: as soon as the next loop is ready"
    if cmd in ("play", "pause", "toggle", "stop", "next"):
        return status_line(result["status"]) if "status" in result else None
    if cmd == "prompt":
        text = f"prompt: {result.get('prompt')}"
        if result.get("dropped"):
            text += f"  ({result['dropped']} queued loops dropped)"
        return text
    if cmd == "preset":
        return f"preset {result.get('preset')}: {result.get('prompt')}"
    if cmd == "presets":
        current = result.get("current")
        rows = []
        for p in result.get("presets", []):
            mark = "*" if p["name"] == current else " "
            rows.append(f"{mark} {p['name']:<12} {p.get('description') or p['prompt']}")
        return "\n".join(rows)
    if cmd == "volume":
        return f"volume: {result.get('volume')}%"
    if cmd in ("crossfade", "min-play", "duration"):
        key = {"crossfade": "crossfade", "min-play": "min_play", "duration": "seconds"}[cmd]
        return f"{cmd}: {fmt_num(result.get(key), 's')}"
    if cmd in ("model", "generator"):
        key = "model" if cmd == "model" else "backend"
        return f"{cmd}: {result.get(key)}"
    if cmd == "save":
        return f"saved {result.get('path')}"
    if cmd == "sleep":
        sleep = result.get("sleep")
        if not sleep:
            return "sleep: off"
        return f"sleep: pausing in {fmt_time(sleep.get('remaining'))}"
    if cmd in ("queue", "history", "library"):
        entries = result.get("entries", [])
        head = {
            "queue": f"{len(entries)} loops ready",
            "history": f"{len(entries)} loops played",
            "library": f"{result.get('loops', len(entries))} loops, "
            f"{fmt_num(result.get('mb'), 'MB')}",
        }[cmd]
        lines = [head]
        for i, e in enumerate(entries, 1):
            line = entry_line(i, e)
            if cmd == "history" and e.get("started"):
                line += "  " + time.strftime("%H:%M:%S", time.localtime(e["started"]))
            lines.append(line)
        return "\n".join(lines)
    if cmd == "schedule":
        firings = result.get("firings") or []
        if not firings:
            return "no schedule (add schedule: entries to the config)"
        rows = []
        for f in firings:
            # The daemon's local time, which the schedule is written in.
            when = datetime.fromisoformat(f["local"]).strftime("%a %Y-%m-%d %H:%M")
            what = f"preset {f['preset']}" if f.get("preset") else json.dumps(f.get("prompt"))
            rows.append(f"{when}  {what}  (schedule[{f.get('entry')}]: {f.get('when')})")
        return "\n".join(rows)
    if cmd == "reload":
        changed = result.get("changed") or []
        text = f"config reloaded from {result.get('config')}"
        return text + (f" (changed: {', '.join(changed)})" if changed else " (no changes)")
    if cmd == "ping":
        return "pong"
    if cmd == "version":
        return (
            f"infiniloopctl {__version__}, infiniloopd {result.get('version')} "
            f"(protocol {result.get('protocol')})"
        )
    return json.dumps(result, ensure_ascii=False)


def event_line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    fields = []
    for key, value in data.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        elif not isinstance(value, (int, str)) or (isinstance(value, str) and " " in value):
            value = json.dumps(value, ensure_ascii=False)
        fields.append(f"{key}={value}")
    return " ".join([str(event.get("event")), *fields])


# --- commands ---------------------------------------------------------------------------

STEP_RE = re.compile(r"^[+-]?\d+(\.\d+)?$")


def _volume_value(text: str) -> int | str:
    if not STEP_RE.match(text):
        raise argparse.ArgumentTypeError(f"expected N, +N or -N, got {text!r}")
    return text if text[0] in "+-" else int(float(text))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    return value


# How the client reads each kind of argument from the command line.
_CLI_TYPES = {"step": _volume_value, "float": _seconds, "int": int}


def request_for(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The protocol command and arguments for the parsed command line."""
    cmd = args.command
    spec = next((s for s in COMMANDS if s.name == cmd), None)
    out: dict[str, Any] = {}
    for arg in spec.args if spec is not None else ():
        value = getattr(args, arg.name, None)
        if arg.cli == "words":
            value = " ".join(value or ()).strip() or None
            if value is None:
                return cmd, {}  # no text: only show (any flag with it means nothing)
        if value is not None:
            out[arg.name] = value
    return cmd, out


def _add_arg(parser: argparse.ArgumentParser, arg: Arg) -> None:
    kind = _CLI_TYPES.get(arg.kind)
    extra: dict[str, Any] = {"help": arg.help}
    if kind is not None:
        extra["type"] = kind
    if arg.cli == "flag":
        parser.add_argument(f"--{arg.name}", action="store_true", help=arg.help)
    elif arg.cli == "option":
        parser.add_argument(f"--{arg.name}", default=arg.default, **extra)
    elif arg.cli == "words":
        parser.add_argument(arg.name, nargs="*", help=arg.help)
    else:
        parser.add_argument(arg.name, nargs=None if arg.required else "?", **extra)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: accepted before or after the command without one overriding the other.
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the raw result"
    )
    common.add_argument(
        "--endpoint", default=argparse.SUPPRESS, help="the daemon's control endpoint"
    )
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help="seconds to wait for an answer"
    )
    parser = argparse.ArgumentParser(
        prog="infiniloopctl",
        description="Control the infiniloop daemon.",
        parents=[common],
        epilog="Exit status: 0 ok, 1 refused by the daemon, 2 usage error, 3 daemon not running.",
    )
    parser.add_argument("--version", action="version", version=f"infiniloopctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, helptext: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=helptext, description=helptext, parents=[common])

    for spec in COMMANDS:
        if not spec.client:
            continue
        p = add(spec.name, spec.help)
        for arg in spec.args:
            _add_arg(p, arg)
        if spec.name == "status":
            p.add_argument(
                "-v", "--verbose", action="store_true", help="everything, on several lines"
            )
        if spec.name == "reload":
            # The client-only command goes where `mpc idleloop` would be in the list.
            p = add("watch", "print events as they happen (like mpc idleloop)")
            p.add_argument("--count", type=int, default=0, help="exit after this many events")
    return parser


def watch(client: Client, args: argparse.Namespace, as_json: bool) -> int:
    """Print events until interrupted; fetch any that the subscription missed."""
    client.check_running()
    last = client.request("status").get("last_seq", 0)
    sock = client.ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    client._secure(sock, client.endpoints.events)
    sock.setsockopt(zmq.SUBSCRIBE, protocol.EVENT_TOPIC)
    sock.connect(client.endpoints.events)
    seen = 0

    def show(event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False) if as_json else event_line(event)
        print(terminal_safe(line), flush=True)

    try:
        while True:
            if not sock.poll(2000, zmq.POLLIN):
                client.check_running()  # raises NotRunning when the daemon went away
                continue
            frames = sock.recv_multipart()
            try:
                event = protocol.decode_event(frames[-1])
            except (ProtocolError, ValueError):
                continue
            seq = event["seq"]
            if seq <= last:
                if seq < last - 1:  # numbering restarted: a new daemon
                    print("infiniloopctl: the daemon restarted", file=sys.stderr)
                else:
                    continue
            elif seq > last + 1:
                missed = client.request("events", {"since": last}).get("events", [])
                missed = [e for e in missed if e["seq"] < seq]
                if len(missed) < seq - last - 1:
                    print(
                        f"infiniloopctl: {seq - last - 1 - len(missed)} events lost",
                        file=sys.stderr,
                    )
                for e in missed:
                    show(e)
                    seen += 1
            show(event)
            last = seq
            seen += 1
            if args.count and seen >= args.count:
                return EXIT_OK
            if event.get("event") == "stopping":
                raise NotRunning("the daemon stopped")
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        sock.close(0)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except BrokenPipeError:
        # The reader went away (`infiniloopctl watch | head`): not worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, usage errors are 2
        return int(exc.code or 0)
    if args.command is None:
        args.command = "status"
        args.verbose = False
    as_json = getattr(args, "json", False)
    timeout = getattr(args, "timeout", protocol.DEFAULT_TIMEOUT)
    override = getattr(args, "endpoint", None)
    if not timeout > 0:
        print("infiniloopctl: --timeout: expected seconds above 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        endpoints = protocol.resolve_endpoints(override, read_config=True)
    except UserError as exc:
        print(f"infiniloopctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    discovered = not override and not os.environ.get(protocol.ENDPOINT_ENV)
    client = Client(endpoints, timeout, discovered and endpoints.is_ipc)
    try:
        if args.command == "watch":
            return watch(client, args, as_json)
        cmd, req_args = request_for(args)
        result = client.request(cmd, req_args)
    except NotRunning as exc:
        print(terminal_safe(f"infiniloopctl: {exc}"), file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ProtocolError as exc:
        print(terminal_safe(f"infiniloopctl: {exc}"), file=sys.stderr)
        return exit_status(exc.code)
    except UserError as exc:
        print(f"infiniloopctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        client.close()
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=None))
    else:
        text = render(cmd, result, args)
        if text:
            print(terminal_safe(text))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
