"""The control protocol shared by the daemon and `infiniloopctl`: messages and endpoints.

Import-light on purpose (stdlib, `paths` and `errors` only): the client imports it
and must answer `status` in well under 150 ms. pyzmq is imported by the callers.

Request:  ``{"v": 1, "cmd": "volume", "args": {"value": "+5"}}``
Reply:    ``{"ok": true, "result": {...}}`` or
          ``{"ok": false, "error": {"code": "bad_argument", "message": "..."}}``
Event:    ``{"v": 1, "seq": 17, "event": "loop_started", "data": {...}, "time": 1.7e9}``,
          published as two frames ``[b"event", json]``. `seq` grows by one per event,
          so a subscriber can tell when it missed some (and fetch them with `events`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infiniloopd import paths
from infiniloopd.errors import UserError

VERSION = 1
# ZMQ_MAXMSGSIZE on the server: a peer that sends a bigger frame is disconnected.
MAX_MESSAGE_BYTES = 64 * 1024
# Client side: how long a request may take before the client gives up.
DEFAULT_TIMEOUT = 5.0
EVENT_TOPIC = b"event"

CONTROL_SOCKET = "control.sock"
EVENTS_SOCKET = "events.sock"
LOCK_FILE = "daemon.lock"
ENDPOINT_ENV = "INFINILOOP_ENDPOINT"
SERVER_KEY_ENV = "INFINILOOP_SERVER_KEY"
# The client's own CURVE secret key file; its public key must be in the daemon's allow-list.
CLIENT_KEY_ENV = "INFINILOOP_CLIENT_KEY"

# Error codes in replies. The client maps all of them to exit status 1.
BAD_REQUEST = "bad_request"  # not JSON, not an object, wrong frames, wrong version
TOO_LARGE = "too_large"
UNKNOWN_COMMAND = "unknown_command"
BAD_ARGUMENT = "bad_argument"  # missing, unknown, wrong type or out of range
NOT_READY = "not_ready"  # e.g. `next` with no loop ready, `save` with nothing playing
NOT_FOUND = "not_found"  # e.g. unknown preset
EXISTS = "exists"  # `save` would overwrite
FAILED = "failed"  # the command was valid but could not be carried out
INTERNAL = "internal"  # a bug in the daemon; the message says where to look


class ProtocolError(UserError):
    """A request or reply that does not follow the protocol; carries an error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- messages ---------------------------------------------------------------------------


def encode_request(cmd: str, args: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"v": VERSION, "cmd": cmd, "args": args or {}}).encode()


def decode_request(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    """Parse a request's frames into (command, args); raises ProtocolError."""
    if len(frames) != 1:
        raise ProtocolError(BAD_REQUEST, f"expected one frame, got {len(frames)}")
    raw = frames[0]
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(TOO_LARGE, f"request of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        msg = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(BAD_REQUEST, "request is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(BAD_REQUEST, f"request is not JSON: {exc.msg}") from None
    except RecursionError:
        raise ProtocolError(BAD_REQUEST, "request is nested too deeply") from None
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_REQUEST, "request must be a JSON object")
    version = msg.get("v", VERSION)
    if version != VERSION:
        raise ProtocolError(BAD_REQUEST, f"protocol version {version!r} not supported")
    cmd = msg.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise ProtocolError(BAD_REQUEST, 'request needs a "cmd" string')
    args = msg.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ProtocolError(BAD_REQUEST, '"args" must be a JSON object')
    return cmd, args


def _dump(payload: Any) -> bytes:
    """JSON as UTF-8; a lone surrogate that slipped into a text (a server's error message,
    a file name) becomes "?" here instead of reaching a client that cannot print it."""
    text = json.dumps(payload, default=_jsonable, ensure_ascii=False)
    return text.encode("utf-8", "replace")


def encode_ok(result: dict[str, Any] | None = None) -> bytes:
    return _dump({"ok": True, "result": result or {}})


def encode_error(code: str, message: str) -> bytes:
    return _dump({"ok": False, "error": {"code": code, "message": message}})


def decode_reply(raw: bytes) -> dict[str, Any]:
    """The result of a reply; raises ProtocolError(code, message) for an error reply."""
    try:
        msg = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ProtocolError(BAD_REQUEST, "the daemon sent a reply that is not JSON") from None
    if not isinstance(msg, dict) or "ok" not in msg:
        raise ProtocolError(BAD_REQUEST, "the daemon sent a malformed reply")
    if msg["ok"]:
        result = msg.get("result")
        return result if isinstance(result, dict) else {}
    err = msg.get("error") or {}
    raise ProtocolError(str(err.get("code", FAILED)), str(err.get("message", "request failed")))


def encode_event(seq: int, name: str, data: dict[str, Any], when: float) -> bytes:
    payload = {"v": VERSION, "seq": seq, "event": name, "data": data, "time": when}
    return _dump(payload)


def decode_event(raw: bytes) -> dict[str, Any]:
    msg = json.loads(raw.decode("utf-8"))
    if not isinstance(msg, dict) or not isinstance(msg.get("seq"), int):
        raise ProtocolError(BAD_REQUEST, "malformed event")
    return msg


def _jsonable(obj: Any) -> Any:
    # Paths and numpy scalars end up in results; render them plainly.
    if isinstance(obj, Path):
        return str(obj)
    for attr in ("item", "tolist"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    return str(obj)


# --- endpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    control: str
    events: str

    @property
    def is_ipc(self) -> bool:
        return self.control.startswith("ipc://")

    @property
    def control_path(self) -> Path | None:
        return ipc_path(self.control)

    @property
    def events_path(self) -> Path | None:
        return ipc_path(self.events)


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else None


def default_control_endpoint() -> str:
    return f"ipc://{paths.runtime_dir() / CONTROL_SOCKET}"


def events_endpoint_for(control: str) -> str:
    """The PUB endpoint beside a control endpoint: events.sock in the same dir, or port+1."""
    path = ipc_path(control)
    if path is not None:
        if path.name == CONTROL_SOCKET:
            return f"ipc://{path.with_name(EVENTS_SOCKET)}"
        return f"ipc://{path.with_name(path.stem + '.events' + path.suffix)}"
    if control.startswith("tcp://"):
        host, sep, port = control[len("tcp://") :].rpartition(":")
        if sep and port.isdigit() and 0 < int(port) < 65535:
            return f"tcp://{host}:{int(port) + 1}"
    raise ProtocolError(
        BAD_ARGUMENT, f"endpoint {control!r}: expected ipc://PATH or tcp://HOST:PORT"
    )


def check_endpoint(endpoint: str, where: str = "endpoint") -> str:
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint
    if endpoint.startswith("tcp://"):
        events_endpoint_for(endpoint)  # validates the port
        return endpoint
    raise UserError(f"{where}: expected an ipc:// or tcp:// ZeroMQ endpoint, got {endpoint!r}")


# The client reads no more of a config file than this (a config is a few KB).
CONFIG_READ_LIMIT = 1024 * 1024


def _config_endpoint(config_path: Path | None) -> str | None:
    """control.endpoint from the user's config file, reading nothing else of it.

    The client needs only the endpoint: a mistake in any daemon key, or a file that is
    not even valid YAML, must not stop `infiniloopctl` from reaching the daemon, so
    this composes the YAML into nodes (aliases stay references, nothing is expanded or
    converted) and looks up the one scalar. Only a bad `control.endpoint` is an error.
    """
    path = config_path or paths.config_dir() / "config.yaml"
    from infiniloopd.atomic import read_bounded  # stdlib only

    try:
        # Regular files only, never blocking: a FIFO there cannot hang the client.
        raw = read_bounded(path, CONFIG_READ_LIMIT)
    except OSError:
        return None  # missing, too big, not a file: the daemon says what is wrong
    if b"endpoint" not in raw:
        return None
    import yaml  # deferred: only when the file mentions an endpoint

    try:
        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return None  # the daemon reports what is wrong with the file; we use the default
    node = _child(_child(root, "control"), "endpoint")
    if node is None:
        return None
    where = f"{path}: control.endpoint"
    if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
        if isinstance(node, yaml.ScalarNode):
            return None  # `endpoint:` left empty means the default, as for the daemon
        raise UserError(f"{where}: expected an ipc:// or tcp:// ZeroMQ endpoint")
    return check_endpoint(node.value, where)


def _child(node: Any, key: str) -> Any:
    """The value node under `key` in a YAML mapping node, or None."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def resolve_endpoints(
    override: str | None = None,
    configured: str | None = None,
    *,
    config_path: Path | None = None,
    read_config: bool = False,
) -> Endpoints:
    """Where the control socket is: --endpoint, then $INFINILOOP_ENDPOINT, then the config.

    The daemon passes its loaded config's `control.endpoint` as `configured`; the client
    sets `read_config` to look it up in the user's config file itself.
    """
    if override:
        control = check_endpoint(override, "--endpoint")
    elif os.environ.get(ENDPOINT_ENV):
        control = check_endpoint(os.environ[ENDPOINT_ENV], ENDPOINT_ENV)
    else:
        if configured is None and read_config:
            configured = _config_endpoint(config_path)
        control = configured or default_control_endpoint()
    return Endpoints(control=control, events=events_endpoint_for(control))


def lock_path() -> Path:
    return paths.runtime_dir() / LOCK_FILE


def running_pid() -> int | None:
    """The PID recorded by a live daemon in the lock file, or None if none is running."""
    from infiniloopd.atomic import read_bounded  # stdlib only: light enough for the client

    try:
        # Bounded and non-blocking: whatever sits at that path cannot hang the client.
        text = read_bounded(lock_path(), 64).decode("ascii").strip()
        pid = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, though not ours: still tells the user something runs
    return pid


def read_curve_key(path: Path, *, secret: bool) -> bytes:
    """A Z85 CURVE key from a file: the key alone, or a zmq certificate file.

    A secret key that others may read is refused: whoever reads it can pose as the daemon.
    """
    try:
        st = path.stat()
        if secret and st.st_mode & 0o077:
            raise UserError(
                f"{path}: CURVE secret key readable by others (mode {st.st_mode & 0o777:o}); "
                f"run chmod 600 {path}"
            )
        if st.st_size > 4096:
            raise UserError(f"{path}: not a CURVE key file (over 4 KB)")
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"{path}: cannot read CURVE key: {reason}") from None
    wanted = "secret-key" if secret else "public-key"
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") or not line:
            continue
        if "=" in line:
            name, _, value = line.partition("=")
            if name.strip() != wanted:
                continue
            line = value.strip().strip('"')
        if len(line) == 40:
            return line.encode("ascii")
    raise UserError(f"{path}: expected a 40-character Z85 CURVE {wanted}")


def read_allowed_keys(directory: Path) -> frozenset[bytes]:
    """The client public keys in an allow-list directory (one key or certificate per file).

    Files named *.key_secret (zmq.auth's secret halves) and dot-files are skipped.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise UserError(f"{directory}: cannot read the CURVE allow-list: {exc.strerror}") from None
    keys = set()
    for name in names:
        path = directory / name
        if name.startswith(".") or name.endswith("_secret") or not path.is_file():
            continue
        keys.add(read_curve_key(path, secret=False))
    return frozenset(keys)
