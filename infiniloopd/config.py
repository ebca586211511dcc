"""The configuration schema: declared once, giving defaults, validation and messages.

Each section is a dataclass whose fields carry a `Kind` in their metadata. The
kind converts a YAML value and, when it cannot, says what it expected; the
loader turns that into one line naming the file, the key path, what was
expected and what was given. Nothing here imports third-party audio modules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infiniloopd import paths
from infiniloopd.errors import UserError


class ConfigError(UserError):
    """A config file or value that cannot be used."""


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
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            raise _Bad(self.expected)
        if not math.isfinite(value) or not (self.lo <= value <= self.hi):
            raise _Bad(self.expected)
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Text(Kind):
    nonempty: bool = True
    max_len: int = 4096

    def convert(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise _Bad(self.expected)
        if (self.nonempty and not value.strip()) or len(value) > self.max_len or "\0" in value:
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
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise _Bad(self.expected)
        return Path(os.path.expandvars(value)).expanduser()


@dataclass(frozen=True)
class Argv(Kind):
    """A command as a list of strings (never a shell line)."""

    def convert(self, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise _Bad(self.expected)
        if not all(isinstance(v, str) and v and "\0" not in v for v in value):
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
            if not isinstance(url, str) or len(url) > 2048 or any(c.isspace() for c in url):
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
OUTPUT_BACKENDS = ("auto", "pulse", "alsa", "file", "null")
FILE_FORMATS = ("pcm16", "float32")
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
        "auto", Choice("one of auto, pulse, alsa, file, null", choices=OUTPUT_BACKENDS)
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


@dataclass
class PlaybackConfig:
    crossfade: float = _k(6.0, Number("seconds between 0 and 60", lo=0, hi=60))
    min_play: float = _k(60.0, Number("seconds between 0 and 86400", lo=0, hi=86400))
    volume: int = _k(80, Number("an integer between 0 and 100", lo=0, hi=100, integer=True))


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
    return text if len(text) <= 60 else text[:57] + "..."


def _build(cls: type, data: Any, where: str, key_path: str) -> Any:
    if not isinstance(data, dict):
        what = key_path or "top level"
        raise ConfigError(f"{where}: {what}: expected a mapping of keys, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{key_path}.{key}" if key_path else str(key)
        f = fields.get(key) if isinstance(key, str) else None
        if f is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: {full}: unknown key (known keys: {known})")
        section = f.default_factory
        if isinstance(section, type) and dataclasses.is_dataclass(section):
            kwargs[key] = _build(section, {} if value is None else value, where, full)
            continue
        kind: Kind = f.metadata["kind"]
        try:
            kwargs[key] = kind.parse(value)
        except _Bad as bad:
            raise ConfigError(f"{where}: {full}: expected {bad}, got {_show(value)}") from None
    return cls(**kwargs)


def _cross_check(cfg: Config, where: str) -> None:
    """Rules that involve more than one key."""
    if cfg.generator.backend == "command" and not cfg.generator.command:
        raise ConfigError(
            f"{where}: generator.command: expected a command list when generator.backend is "
            'command, e.g. ["my-gen", "{prompt}", "{seconds}", "{output}"], got null'
        )
    if cfg.output.backend == "file" and cfg.output.path is None:
        raise ConfigError(
            f"{where}: output.path: expected a WAV file path when output.backend is file, got null"
        )
    if cfg.generator.backend == "musicgpt-server" and not cfg.generator.servers:
        raise ConfigError(
            f"{where}: generator.servers: expected a list of MusicGPT server URLs when "
            'generator.backend is musicgpt-server, e.g. ["ws://gpu-box:8642/ws"], got null'
        )
    a = cfg.analysis
    if a.max_loop is not None and a.max_loop < a.min_loop:
        raise ConfigError(
            f"{where}: analysis.max_loop: expected at least analysis.min_loop ({a.min_loop:g}), "
            f"got {a.max_loop:g}"
        )
    ep = cfg.control.endpoint
    if ep is not None:
        if not (ep.startswith("ipc://") or ep.startswith("tcp://")):
            raise ConfigError(
                f"{where}: control.endpoint: expected an ipc:// or tcp:// endpoint, got {_show(ep)}"
            )
        if ep.startswith("tcp://") and cfg.control.curve_secret_key_file is None:
            raise ConfigError(
                f"{where}: control.endpoint: a tcp:// endpoint needs "
                "control.curve_secret_key_file (CURVE encryption), got none"
            )


def parse_config(data: Any, where: str = "<config>") -> Config:
    """Build a validated Config from parsed YAML data (None means all defaults)."""
    cfg = _build(Config, {} if data is None else data, where, "")
    cfg.source = where
    _cross_check(cfg, where)
    return cfg


def default_config_path() -> Path:
    return paths.config_dir() / "config.yaml"


def load_config(path: Path | None = None) -> Config:
    """Load `path`, else the user's config.yaml if it exists, else the defaults."""
    import yaml  # deferred: keeps `infiniloopctl` start-up light

    if path is None:
        path = default_config_path()
        if not path.exists():
            return parse_config(None, "<defaults>")
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{where}: cannot read: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if mark is not None:
            raise ConfigError(
                f"{where}: line {mark.line + 1}, column {mark.column + 1}: {problem}"
            ) from None
        raise ConfigError(f"{where}: {problem}") from None
    return parse_config(data, where)


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
        return obj

    return conv(cfg)
