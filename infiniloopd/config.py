"""The configuration schema: declared once, giving defaults, validation and messages.

Each section is a dataclass whose fields carry a `Kind` in their metadata. The
kind converts a YAML value and, when it cannot, says what it expected; the
loader turns that into one line naming the file, the key path, what was
expected and what was given. Nothing here imports third-party audio modules.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infiniloopd import paths
from infiniloopd.errors import UserError
from infiniloopd.text import printable, text_problem

# A config is a few kilobytes; anything near this is not one (and would cost parse time).
MAX_CONFIG_BYTES = 256 * 1024
# Bounds on the YAML's shape, checked on the event stream before anything is built.
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 20000


class ConfigError(UserError):
    """A config file or value that cannot be used.

    `problems` holds one line per bad key (the message is those lines joined), so a
    user fixes every mistake of a file in one go.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class _Bad(Exception):
    """Raised by a Kind: carries what was expected."""


# --- kinds of values --------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    expected: str = "a value"
    optional: bool = False

    def parse(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        return self.convert(value)

    def convert(self, value: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class Number(Kind):
    lo: float = -math.inf
    hi: float = math.inf
    integer: bool = False

    def convert(self, value: Any) -> Any:
        # YAML gives bools for yes/no; they are not numbers to a user.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(self.expected)
        try:
            # A 400-digit integer is an int to YAML and an OverflowError to float().
            number = float(value)
        except OverflowError:
            raise _Bad(self.expected) from None
        if self.integer and not number.is_integer():
            raise _Bad(self.expected)
        if not math.isfinite(number) or not (self.lo <= number <= self.hi):
            raise _Bad(self.expected)
        return int(number) if self.integer else number


@dataclass(frozen=True)
class Text(Kind):
    nonempty: bool = True
    max_len: int = 4096

    def convert(self, value: Any) -> Any:
        if text_problem(value, max_len=self.max_len, nonempty=self.nonempty) is not None:
            raise _Bad(self.expected)
        return value


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...] = ()

    def convert(self, value: Any) -> Any:
        # `backend: null` is YAML's null, but the user means the backend named null.
        if value is None and "null" in self.choices:
            return "null"
        if not isinstance(value, str) or value not in self.choices:
            raise _Bad(self.expected)
        return value


@dataclass(frozen=True)
class Flag(Kind):
    def convert(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise _Bad(self.expected)
        return value


@dataclass(frozen=True)
class PathKind(Kind):
    def convert(self, value: Any) -> Any:
        if text_problem(value, max_len=4096) is not None:
            raise _Bad(self.expected)
        return Path(os.path.expandvars(value)).expanduser()


@dataclass(frozen=True)
class Choices(Kind):
    """A non-empty list of distinct names, each one of `choices`."""

    choices: tuple[str, ...] = ()

    def convert(self, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
            raise _Bad(self.expected)
        if not all(isinstance(v, str) and v in self.choices for v in value):
            raise _Bad(self.expected)
        return list(value)


@dataclass(frozen=True)
class OutputList(Kind):
    """The `outputs:` list, kept raw here; `_build_outputs` checks each entry."""

    def convert(self, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise _Bad("a list of outputs, e.g. [{backend: pulse}, {backend: http}]")
        return value


@dataclass(frozen=True)
class ScheduleList(Kind):
    """The `schedule:` list, kept raw here; `_build_schedule` checks each entry."""

    def convert(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise _Bad('a list of entries such as [{at: "07:30", preset: morning}]')
        return value


@dataclass(frozen=True)
class Argv(Kind):
    """A command as a list of strings (never a shell line)."""

    def convert(self, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise _Bad(self.expected)
        if len(value) > 1000 or not all(
            text_problem(v, max_len=4096, name=False) is None for v in value
        ):
            raise _Bad(self.expected)
        return list(value)


# --- musicgpt-server: the MusicGPT servers to use (kept as one block) ------------------


@dataclass(frozen=True)
class ServerUrls(Kind):
    """A non-empty list of ws:// or wss:// URLs of MusicGPT servers' /ws endpoints."""

    def convert(self, value: Any) -> Any:
        from urllib.parse import urlsplit

        if not isinstance(value, list) or not 1 <= len(value) <= 32:
            raise _Bad(self.expected)
        urls = []
        for url in value:
            if text_problem(url, max_len=2048) is not None or any(c.isspace() for c in url):
                raise _Bad(self.expected)
            try:
                parts = urlsplit(url)
                port = parts.port  # raises ValueError on a bad port
            except ValueError:
                raise _Bad(self.expected) from None
            if parts.scheme not in ("ws", "wss") or not parts.hostname or parts.fragment:
                raise _Bad(self.expected)
            del port
            if url in urls:
                raise _Bad(self.expected)
            urls.append(url)
        return urls


def _k(default: Any, kind: Kind, doc: str = "") -> Any:
    """A config field: its default, its kind, and a short description."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"kind": kind, "doc": doc})
    return field(default=default, metadata={"kind": kind, "doc": doc})


# --- the schema -------------------------------------------------------------------------

GENERATOR_BACKENDS = ("synth", "musicgpt", "musicgpt-server", "command")
MUSICGPT_MODELS = (
    "small",
    "small-fp16",
    "small-quant",
    "medium",
    "medium-fp16",
    "medium-quant",
    "large",
)
OUTPUT_BACKENDS = ("auto", "pulse", "alsa", "file", "null", "http", "snapcast")
FILE_FORMATS = ("pcm16", "float32")
HTTP_FORMATS = ("opus", "mp3")
LOG_LEVELS = ("debug", "info", "warning", "error")

DEFAULT_PROMPT = "calm ambient pads with soft piano"


@dataclass
class GeneratorConfig:
    backend: str = _k(
        "synth",
        Choice("one of " + ", ".join(GENERATOR_BACKENDS), choices=GENERATOR_BACKENDS),
    )
    seconds: float = _k(20.0, Number("seconds between 5 and 30", lo=5, hi=30))
    model: str = _k(
        "small", Choice("one of " + ", ".join(MUSICGPT_MODELS), choices=MUSICGPT_MODELS)
    )
    binary: Path | None = _k(None, PathKind("a path to the musicgpt binary", optional=True))
    soundfont: Path | None = _k(None, PathKind("a path to a .sf2 SoundFont", optional=True))
    command: list[str] | None = _k(
        None,
        Argv('a list of strings, e.g. ["my-gen", "{prompt}", "{seconds}", "{output}"]', True),
    )
    gpu: bool = _k(False, Flag("true or false"))
    use_split_decoder: bool = _k(False, Flag("true or false"))
    force_download: bool = _k(False, Flag("true or false"))
    prefetch: int = _k(2, Number("an integer between 1 and 10", lo=1, hi=10, integer=True))
    concurrency: int = _k(1, Number("an integer between 1 and 4", lo=1, hi=4, integer=True))
    timeout: float = _k(900.0, Number("seconds between 10 and 86400", lo=10, hi=86400))
    nice: int = _k(10, Number("an integer between 0 and 19", lo=0, hi=19, integer=True))
    idle_priority: bool = _k(True, Flag("true or false"))
    # musicgpt-server: where the MusicGPT servers are (their WebSocket endpoints).
    servers: list[str] | None = _k(
        None,
        ServerUrls('a list of distinct ws:// or wss:// URLs, e.g. ["ws://gpu-box:8642/ws"]', True),
    )


@dataclass
class OutputConfig:
    backend: str = _k(
        "auto", Choice("one of " + ", ".join(OUTPUT_BACKENDS), choices=OUTPUT_BACKENDS)
    )
    sink: str | None = _k(None, Text("a PulseAudio sink name", optional=True))
    device: str = _k("default", Text("an ALSA PCM name"))
    path: Path | None = _k(None, PathKind("a path for the WAV file", optional=True))
    format: str = _k("pcm16", Choice("one of pcm16, float32", choices=FILE_FORMATS))
    realtime: bool = _k(True, Flag("true or false"))
    rate: int = _k(
        48000, Number("an integer between 8000 and 192000", lo=8000, hi=192000, integer=True)
    )
    channels: int = _k(2, Number("an integer between 1 and 8", lo=1, hi=8, integer=True))
    block_ms: float = _k(20.0, Number("milliseconds between 5 and 200", lo=5, hi=200))
    latency_ms: float = _k(200.0, Number("milliseconds between 20 and 2000", lo=20, hi=2000))
    # --- network outputs (http, snapcast) ---
    listen: str = _k("127.0.0.1:8000", Text("HOST:PORT to serve the HTTP stream on"))
    formats: list[str] = _k(["opus", "mp3"], Choices("a list of opus, mp3", choices=HTTP_FORMATS))
    password: str | None = _k(None, Text("a password for the HTTP stream", optional=True))
    bitrate: int = _k(128, Number("kbit/s between 32 and 320", lo=32, hi=320, integer=True))
    sample_format: str = _k("48000:16:2", Text('RATE:BITS:CHANNELS in quotes, e.g. "48000:16:2"'))


@dataclass
class PlaybackConfig:
    crossfade: float = _k(6.0, Number("seconds between 0 and 60", lo=0, hi=60))
    min_play: float = _k(60.0, Number("seconds between 0 and 86400", lo=0, hi=86400))
    volume: int = _k(80, Number("an integer between 0 and 100", lo=0, hi=100, integer=True))
    # Bar-line, tempo-matched transitions (false: crossfade at once, as before).
    align: bool = _k(True, Flag("true or false"))
    # branch: jump between similar beats of the prompt's loops; loop: plain looping
    variation: str = _k("branch", Choice("one of branch, loop", choices=("branch", "loop")))


@dataclass
class AnalysisConfig:
    target_lufs: float = _k(-18.0, Number("LUFS between -40 and -6", lo=-40, hi=-6))
    peak_ceiling_db: float = _k(-1.0, Number("dBFS between -20 and 0", lo=-20, hi=0))
    min_loop: float = _k(3.0, Number("seconds between 1 and 60", lo=1, hi=60))
    max_loop: float | None = _k(
        None, Number("seconds between 1 and 600, or null", lo=1, hi=600, optional=True)
    )


@dataclass
class LibraryConfig:
    dir: Path = _k(None, PathKind("a directory path"))
    max_mb: float = _k(500.0, Number("megabytes between 10 and 1000000", lo=10, hi=1e6))
    music_dir: Path = _k(None, PathKind("a directory path"))

    def __post_init__(self) -> None:
        if self.dir is None:
            self.dir = paths.data_dir() / "loops"
        if self.music_dir is None:
            self.music_dir = paths.music_dir()


@dataclass
class ControlConfig:
    endpoint: str | None = _k(
        None, Text("an ipc:// or tcp:// ZeroMQ endpoint, or null", optional=True)
    )
    curve_secret_key_file: Path | None = _k(
        None, PathKind("a path to a CURVE secret key file", optional=True)
    )
    curve_allowed_keys_dir: Path | None = _k(
        None, PathKind("a directory of allowed client CURVE public keys", optional=True)
    )


@dataclass
class MpdConfig:
    listen: str = _k("127.0.0.1:6600", Text("HOST:PORT for MPD clients, e.g. 127.0.0.1:6600"))
    password: str | None = _k(
        None, Text("a password MPD clients send with `password`, or null", optional=True)
    )


@dataclass(frozen=True)
class Section(Kind):
    """An optional section: null (off) or a mapping built like any other section."""

    cls: type = object

    def convert(self, value: Any) -> Any:  # pragma: no cover - built by _build
        raise _Bad(self.expected)


@dataclass
class Config:
    prompt: str = _k(
        DEFAULT_PROMPT, Text("a non-empty prompt of at most 1000 characters", max_len=1000)
    )
    log_level: str = _k("info", Choice("one of debug, info, warning, error", choices=LOG_LEVELS))
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    playback: PlaybackConfig = field(default_factory=PlaybackConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    library: LibraryConfig = field(default_factory=LibraryConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    # Several outputs at once (a list of `output:`-like entries); None: just `output:`.
    outputs: list[OutputConfig] | None = _k(None, OutputList("a list of outputs", optional=True))
    # MPRIS2 on the D-Bus session bus (media keys, desktop widgets, playerctl).
    mpris: bool = _k(True, Flag("true or false"))
    # The MPD protocol for mpc, ncmpcpp and phone apps; None: off.
    mpd: MpdConfig | None = _k(
        None, Section("null or a mapping with listen and password", optional=True, cls=MpdConfig)
    )
    # Moods by the clock: [{at: "07:30", preset: morning}, {cron: "...", prompt: "..."}].
    schedule: list[Any] = _k([], ScheduleList("a list of schedule entries", optional=True))
    # Where this config came from, for messages; not a key.
    source: str = field(default="<defaults>", metadata={"internal": True})


# --- loading ----------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A short rendering of a user's value for an error message."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    text = printable(text)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(key: Any, full: str, known: list[str]) -> str:
    """The message for an unknown key, with the nearest known one when there is one."""
    near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if near:
        return f"{full}: unknown key, did you mean {near[0]}?"
    return f"{full}: unknown key (known keys: {', '.join(sorted(known))})"


def _build(cls: type, data: Any, key_path: str, problems: list[tuple[str, str]]) -> Any:
    """An instance of `cls` from `data`; each bad key adds (key path, message) to `problems`
    and is left at its default, so every mistake of a file is found in one pass."""
    if not isinstance(data, dict):
        what = key_path or "top level"
        problems.append((what, f"{what}: expected a mapping of keys, got {_show(data)}"))
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        shown = printable(str(key))[:60]
        full = f"{key_path}.{shown}" if key_path else shown
        f = fields.get(key) if isinstance(key, str) else None
        if f is None:
            problems.append((full, _unknown(key, full, list(fields))))
            continue
        section = f.default_factory
        if isinstance(section, type) and dataclasses.is_dataclass(section):
            kwargs[key] = _build(section, {} if value is None else value, full, problems)
            continue
        kind: Kind = f.metadata["kind"]
        if isinstance(kind, Section):
            kwargs[key] = None if value is None else _build(kind.cls, value, full, problems)
            continue
        try:
            kwargs[key] = kind.parse(value)
        except _Bad as bad:
            problems.append((full, f"{full}: expected {bad}, got {_show(value)}"))
    return cls(**kwargs)


def _cross_check(cfg: Config) -> list[tuple[str, str]]:
    """Rules that involve more than one key, as (key path, message) pairs."""
    out: list[tuple[str, str]] = []
    if cfg.generator.backend == "command" and not cfg.generator.command:
        out.append(
            (
                "generator.command",
                "generator.command: expected a command list when generator.backend is "
                'command, e.g. ["my-gen", "{prompt}", "{seconds}", "{output}"], got null',
            )
        )
    if cfg.output.backend == "file" and cfg.output.path is None:
        out.append(
            (
                "output.path",
                "output.path: expected a WAV file path when output.backend is file, got null",
            )
        )
    if cfg.generator.backend == "musicgpt-server" and not cfg.generator.servers:
        out.append(
            (
                "generator.servers",
                "generator.servers: expected a list of MusicGPT server URLs when "
                'generator.backend is musicgpt-server, e.g. ["ws://gpu-box:8642/ws"], got null',
            )
        )
    a = cfg.analysis
    if a.max_loop is not None and a.max_loop < a.min_loop:
        out.append(
            (
                "analysis.max_loop",
                f"analysis.max_loop: expected at least analysis.min_loop ({a.min_loop:g}), "
                f"got {a.max_loop:g}",
            )
        )
    if cfg.mpd is not None and _host_port(cfg.mpd.listen) is None:
        out.append(
            (
                "mpd.listen",
                f"mpd.listen: expected HOST:PORT with a port between 1 and 65535, "
                f"got {_show(cfg.mpd.listen)}",
            )
        )
    ep = cfg.control.endpoint
    if ep is not None:
        if not (ep.startswith("ipc://") or ep.startswith("tcp://")):
            out.append(
                (
                    "control.endpoint",
                    f"control.endpoint: expected an ipc:// or tcp:// endpoint, got {_show(ep)}",
                )
            )
        elif ep.startswith("tcp://") and cfg.control.curve_secret_key_file is None:
            out.append(
                (
                    "control.endpoint",
                    "control.endpoint: a tcp:// endpoint needs "
                    "control.curve_secret_key_file (CURVE encryption), got none",
                )
            )
        elif ep.startswith("tcp://") and cfg.control.curve_allowed_keys_dir is None:
            # Encryption without an allow-list would let any key pair in.
            out.append(
                (
                    "control.endpoint",
                    "control.endpoint: a tcp:// endpoint needs control.curve_allowed_keys_dir "
                    "(the client public keys allowed in), got none",
                )
            )
    return out


def _host_port(text: str) -> tuple[str, int] | None:
    """("host", port) from "HOST:PORT" or "[v6]:PORT", or None."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def listen_address(text: str) -> tuple[str, int]:
    """The (host, port) of a validated HOST:PORT setting."""
    parsed = _host_port(text)
    if parsed is None:
        raise ConfigError(f"{text!r}: expected HOST:PORT")
    return parsed


# --- outputs: several outputs at once ------------------------------------------------


def _build_outputs(cfg: Config, problems: list[tuple[str, str]]) -> None:
    """Turn the raw `outputs:` list into OutputConfigs; rate, channels, block_ms from `output:`."""
    raw = cfg.outputs
    if raw is None:
        return
    built = []
    for i, item in enumerate(raw):
        key = f"outputs[{i}]"
        if isinstance(item, dict):
            for shared in ("rate", "channels", "block_ms"):
                if shared in item:
                    problems.append(
                        (
                            f"{key}.{shared}",
                            f"{key}.{shared}: set it once under output: (all outputs "
                            "share the player's rate, channels and block size)",
                        )
                    )
        if isinstance(item, dict):  # shared keys reported above, not again as bad values
            item = {k: v for k, v in item.items() if k not in ("rate", "channels", "block_ms")}
        entry = _build(OutputConfig, item, key, problems)
        if not isinstance(item, dict) or "backend" not in item:
            problems.append(
                (
                    f"{key}.backend",
                    f"{key}.backend: expected one of {', '.join(OUTPUT_BACKENDS)}, got nothing",
                )
            )
            continue
        if entry.backend == "file" and entry.path is None:
            problems.append(
                (f"{key}.path", f"{key}.path: expected a WAV file path for backend file")
            )
        if entry.backend == "snapcast" and entry.path is None:
            problems.append(
                (
                    f"{key}.path",
                    f"{key}.path: expected a snapserver pipe path or tcp://HOST:PORT "
                    "for backend snapcast",
                )
            )
        o = cfg.output
        entry.rate, entry.channels, entry.block_ms = o.rate, o.channels, o.block_ms
        built.append(entry)
    cfg.outputs = built


def _build_schedule(cfg: Config, problems: list[tuple[str, str]]) -> None:
    """Turn the raw `schedule:` list into schedule Entries; one line per bad entry."""
    from infiniloopd.core.schedule import parse_schedule

    entries, bad = parse_schedule(cfg.schedule or [])
    problems += bad
    cfg.schedule = entries


def parse_config(data: Any, where: str = "<config>") -> Config:
    """Build a validated Config from parsed YAML data (None means all defaults).

    Raises ConfigError naming every bad key at once, one `where: key: ...` line each.
    """
    problems: list[tuple[str, str]] = []
    cfg = _build(Config, {} if data is None else data, "", problems)
    cfg.source = where
    _build_outputs(cfg, problems)
    _build_schedule(cfg, problems)
    reported = {key for key, _ in problems}
    # A rule on a key already reported would only repeat it in other words.
    problems += [(k, m) for k, m in _cross_check(cfg) if k not in reported]
    if problems:
        lines = [f"{where}: {message}" for _, message in problems]
        raise ConfigError("\n".join(lines), lines)
    return cfg


def default_config_path() -> Path:
    return paths.config_dir() / "config.yaml"


def load_yaml(text: str, where: str, error: type[UserError] = ConfigError) -> Any:
    """Parse YAML text with bounds; `error` with one line for anything refused.

    Anchors and aliases are refused outright: a config or preset file never needs
    them, and refusing them is the only bound that is simple to get right (an alias
    "bomb" of a few hundred bytes expands to gigabytes). Depth and node count are
    bounded too, so no input costs more than a few milliseconds per kilobyte or
    overflows the stack. All of it is checked on the event stream, before building.
    """
    import yaml  # deferred: keeps `infiniloopctl` start-up light

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def at(mark: Any) -> str:
        return f"{where}: line {mark.line + 1}, column {mark.column + 1}" if mark else where

    try:
        depth = 0
        for nodes, event in enumerate(yaml.parse(text, Loader=loader), 1):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise error(
                    f"{at(event.start_mark)}: anchors and aliases (&name, *name) are not "
                    "supported; write the value out"
                )
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise error(
                        f"{at(event.start_mark)}: nested more than {MAX_YAML_DEPTH} levels deep"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            if nodes > MAX_YAML_NODES:
                raise error(f"{where}: more than {MAX_YAML_NODES} values; not a config file")
        return yaml.load(text, Loader=loader)  # a safe loader, checked above
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(f"{at(mark)}: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # The constructors' own limits (e.g. an integer of more than 4300 digits).
        raise error(f"{where}: {' '.join(str(exc).split())[:200]}") from None


def read_text_file(path: Path, limit: int, error: type[UserError] = ConfigError) -> str:
    """A small UTF-8 text file, or `error` in one line (no such file, FIFO, too big...)."""
    from infiniloopd.atomic import read_bounded

    try:
        raw = read_bounded(path, limit)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: cannot read: not UTF-8 text (byte {exc.start})") from None
    if "\0" in text:
        raise error(f"{path}: cannot read: not a text file (contains NUL bytes)")
    return text


def load_config(path: Path | None = None) -> Config:
    """Load `path`, else the user's config.yaml if it exists, else the defaults."""
    if path is None:
        path = default_config_path()
        if not path.exists():
            return parse_config(None, "<defaults>")
    where = str(path)
    text = read_text_file(path, MAX_CONFIG_BYTES)
    return parse_config(load_yaml(text, where), where)


def describe(cfg: Config) -> dict[str, Any]:
    """The config as plain data (for `status -v` and logs)."""

    def conv(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {
                f.name: conv(getattr(obj, f.name))
                for f in dataclasses.fields(obj)
                if not f.metadata.get("internal")
            }
        if isinstance(obj, Path):
            return str(obj)
        if isinstance(obj, list):
            return [conv(item) for item in obj]
        return obj

    return conv(cfg)
