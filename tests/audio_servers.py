"""Real sound servers for tests: PulseAudio, PipeWire's pulse server, and ALSA PCM definitions.

Import the helpers directly (``from tests.audio_servers import PulseServer``) or use the
pytest fixtures (registered in ``tests/conftest.py``):

``pulse_server``
    A private ``pulseaudio`` (no systemd, no dbus) with one null sink, in a temp runtime
    dir. Yields a `PulseServer`: ``.env`` (a full environment for subprocesses: HOME,
    XDG_RUNTIME_DIR, PULSE_RUNTIME_PATH, PULSE_SERVER all point into the temp dir),
    ``.sink`` (the null sink's name), ``.server`` (the PULSE_SERVER string),
    ``.start_recording() -> Recording`` and ``.record(seconds) -> np.ndarray``
    (the sink's monitor through ``parec``, float32 (frames, channels)), ``.kill()``,
    ``.restart()``, ``.sink_inputs()`` (pulsectl sink-input proplists), ``.log_text()``.
``pipewire_server``
    The same interface on ``pipewire`` + ``wireplumber`` + ``pipewire-pulse`` with a
    private ``dbus-daemon``; skipped with the reason if that stack cannot start here.
``alsa_env``
    Depends on ``pulse_server``. Writes ``$HOME/.asoundrc`` into the server's temp home
    defining ``pcm.testfile`` (ALSA ``file`` plugin: raw S16_LE to ``alsa_env.file_path``)
    and ``pcm.testpulse`` (ALSA ``pulse`` plugin into the test server's null sink).
    Run ALSA programs as subprocesses with ``alsa_env.env`` (ALSA reads its config when
    first used, so the environment must be set before the process loads alsa-lib).

Every process is started in its own session and killed (SIGTERM, then SIGKILL) at
teardown; each server lives in its own temp dir, so tests can run in any order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

RATE = 48000
CHANNELS = 2
SINK = "infiniloop_test"
# parec's latency: short, so a recording is not truncated and a gap detector sees 5 ms blocks.
PAREC_LATENCY_MS = 20


def _stop_process(proc: subprocess.Popen | None, timeout: float = 3.0) -> None:
    """Terminate a process we started (its process group), then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


class Recording:
    """A running ``parec`` of a sink's monitor; `stop()` returns float32 (frames, channels)."""

    def __init__(self, env: dict[str, str], source: str, path: Path, channels: int = CHANNELS):
        self.path = path
        self.channels = channels
        self._file = open(path, "wb")  # noqa: SIM115 - kept open while parec writes
        self.proc = subprocess.Popen(
            [
                "parec",
                f"--device={source}",
                "--format=float32le",
                f"--rate={RATE}",
                f"--channels={channels}",
                "--raw",
                f"--latency-msec={PAREC_LATENCY_MS}",
                "--client-name=infiniloop-test-recorder",
            ],
            stdout=self._file,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def frames_so_far(self) -> int:
        return self.path.stat().st_size // (4 * self.channels)

    def wait_frames(self, frames: int, timeout: float = 10.0) -> None:
        """Block until at least `frames` frames have been recorded."""
        _wait_for(lambda: self.frames_so_far() >= frames, timeout, "the recording to grow")

    def stop(self) -> np.ndarray:
        _stop_process(self.proc)
        self._file.close()
        data = np.fromfile(self.path, dtype=np.float32)
        usable = data.size - data.size % self.channels
        return data[:usable].reshape(-1, self.channels)


@dataclass
class PulseServer:
    """A private PulseAudio daemon with one null sink (see the module docstring)."""

    root: Path
    sink: str = SINK
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    _recordings: list[Recording] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"unix:{self.root / 'runtime' / 'native'}"

    @property
    def socket(self) -> Path:
        return self.root / "runtime" / "native"

    def _prepare(self) -> None:
        runtime = self.root / "runtime"
        home = self.root / "home"
        for d in (runtime, home):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        script = self.root / "min.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"load-module module-null-sink sink_name={self.sink} rate={RATE} "
            f"channels={CHANNELS} format=float32le "
            "sink_properties=device.description=infiniloop-test\n"
            f"set-default-sink {self.sink}\n"
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PULSE_", "PIPEWIRE_", "ALSA_"))
            and k != "DBUS_SESSION_BUS_ADDRESS"
        }
        env.update(
            HOME=str(home),
            XDG_RUNTIME_DIR=str(runtime),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_STATE_HOME=str(home / ".local" / "state"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            XDG_CACHE_HOME=str(home / ".cache"),
            PULSE_RUNTIME_PATH=str(runtime),
            PULSE_STATE_PATH=str(self.root / "state"),
            PULSE_SERVER=self.server,
        )
        self.env = env

    def start(self) -> PulseServer:
        self._prepare()
        log = open(self.root / "pulseaudio.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "-F",
                str(self.root / "min.pa"),
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--system=no",
                "--use-pid-file=no",
                "--log-target=stderr",
                "--log-level=4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        try:
            _wait_for(self._answers, 10.0, "pulseaudio to answer")
        except RuntimeError:
            self.kill()
            raise RuntimeError("pulseaudio did not start:\n" + self.log_text()[-2000:]) from None
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError("pulseaudio exited:\n" + self.log_text()[-2000:])
        if not self.socket.exists():
            return False
        result = subprocess.run(
            ["pactl", "list", "short", "sinks"], env=self.env, capture_output=True, text=True
        )
        return result.returncode == 0 and self.sink in result.stdout

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (clients see the connection drop)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def restart(self) -> None:
        """Kill (if running) and start a fresh server on the same socket."""
        self.kill()
        with_socket = self.socket
        if with_socket.exists():
            with_socket.unlink()
        self.start()

    def stop(self) -> None:
        for rec in self._recordings:
            _stop_process(rec.proc)
        _stop_process(self.proc)

    def start_recording(self) -> Recording:
        """Start recording the sink's monitor; returns once parec is connected and streaming."""
        path = self.root / f"rec{len(self._recordings)}.f32"
        rec = Recording(self.env, f"{self.sink}.monitor", path)
        self._recordings.append(rec)
        # An idle null sink can hold a new stream back for a while: let the recorder settle.
        rec.wait_frames(RATE // 10, timeout=10.0)
        return rec

    def record(self, seconds: float) -> np.ndarray:
        rec = self.start_recording()
        time.sleep(seconds)
        return rec.stop()

    def sink_inputs(self) -> list[dict[str, str]]:
        """The proplists of the playback streams on the server (via pulsectl)."""
        import pulsectl

        old = os.environ.get("PULSE_SERVER")
        os.environ["PULSE_SERVER"] = self.server
        try:
            with pulsectl.Pulse("infiniloop-test") as pulse:
                return [dict(si.proplist) for si in pulse.sink_input_list()]
        finally:
            if old is None:
                os.environ.pop("PULSE_SERVER", None)
            else:
                os.environ["PULSE_SERVER"] = old

    def log_text(self) -> str:
        path = self.root / "pulseaudio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def underruns(self) -> int:
        """How many "Implicit underrun" lines the server logged (needs log level 4)."""
        return self.log_text().count("Implicit underrun")


@dataclass
class PipeWireServer(PulseServer):
    """pipewire + wireplumber + pipewire-pulse with a private session bus and a null sink."""

    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"unix:{self.root / 'runtime' / 'pulse' / 'native'}"

    @property
    def socket(self) -> Path:
        return self.root / "runtime" / "pulse" / "native"

    def start(self) -> PipeWireServer:
        self._prepare()
        log = open(self.root / "pulseaudio.log", "ab")  # noqa: SIM115 - owned by the children
        bus = self.root / "runtime" / "bus"
        self.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
        self.env.pop("PULSE_STATE_PATH", None)
        # pipewire-pulse puts its socket in $PULSE_RUNTIME_PATH (default $XDG_RUNTIME_DIR/pulse).
        self.env["PULSE_RUNTIME_PATH"] = str(self.socket.parent)

        def spawn(argv: list[str]) -> subprocess.Popen:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env,
                start_new_session=True,
            )
            self.procs.append(proc)
            return proc

        try:
            spawn(
                [
                    "dbus-daemon",
                    "--session",
                    "--nofork",
                    "--nopidfile",
                    f"--address=unix:path={bus}",
                ]
            )
            _wait_for(bus.exists, 5.0, "dbus-daemon")
            spawn(["pipewire"])
            _wait_for(lambda: (self.root / "runtime" / "pipewire-0").exists(), 5.0, "pipewire")
            spawn(["wireplumber"])
            spawn(["pipewire-pulse"])
            _wait_for(self._pactl_info, 10.0, "pipewire-pulse")
            result = subprocess.run(
                [
                    "pactl",
                    "load-module",
                    "module-null-sink",
                    f"sink_name={self.sink}",
                    f"rate={RATE}",
                    f"channels={CHANNELS}",
                ],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if result.returncode != 0:
                raise RuntimeError(f"pactl load-module failed: {result.stderr.strip()}")
            subprocess.run(
                ["pactl", "set-default-sink", self.sink], env=self.env, check=True, timeout=10
            )
            _wait_for(self._answers, 10.0, "the null sink")
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log.close()
            self.stop()
            raise RuntimeError(f"{exc}\n{self.log_text()[-2000:]}") from None
        log.close()
        self.proc = self.procs[-1]
        return self

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run(
            ["pactl", "list", "short", "sinks"], env=self.env, capture_output=True, text=True
        )
        return result.returncode == 0 and self.sink in result.stdout

    def _pactl_info(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run(["pactl", "info"], env=self.env, capture_output=True)
        return result.returncode == 0

    def kill(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.procs.clear()
        self.start()

    def stop(self) -> None:
        for rec in self._recordings:
            _stop_process(rec.proc)
        for proc in reversed(self.procs):
            _stop_process(proc)


@dataclass
class AlsaEnv:
    """ALSA PCM definitions for a test: `env` for subprocesses, the file plugin's output path."""

    env: dict[str, str]
    file_path: Path
    file_pcm: str = "testfile"
    pulse_pcm: str = "testpulse"

    def read_file_pcm(self, channels: int = CHANNELS) -> np.ndarray:
        """What the file PCM captured: int16 scaled to float32 (frames, channels)."""
        data = np.fromfile(self.file_path, dtype="<i2")
        usable = data.size - data.size % channels
        return data[:usable].reshape(-1, channels).astype(np.float32) / 32767.0


def write_asoundrc(home: Path, file_path: Path, server: str, sink: str) -> None:
    """Define pcm.testfile (file plugin, raw S16_LE) and pcm.testpulse (pulse plugin)."""
    (home / ".asoundrc").write_text(
        f"""
pcm.testfile_raw {{
    type file
    slave.pcm "null"
    file "{file_path}"
    format "raw"
}}
pcm.testfile {{
    type plug
    slave {{
        pcm "testfile_raw"
        format S16_LE
        rate {RATE}
        channels {CHANNELS}
    }}
}}
pcm.testpulse {{
    type pulse
    server "{server}"
    device "{sink}"
}}
"""
    )


def pipewire_available() -> str | None:
    """None if the PipeWire stack's programs exist, else why not."""
    for prog in ("dbus-daemon", "pipewire", "wireplumber", "pipewire-pulse", "pactl"):
        if shutil.which(prog) is None:
            return f"{prog} is not installed"
    return None


# --- pytest fixtures --------------------------------------------------------------------


def _need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture
def pulse_server():
    """A private PulseAudio server with a null sink (see PulseServer)."""
    _need("pulseaudio", "pactl", "parec")
    with tempfile.TemporaryDirectory(prefix="infiniloop-pulse-") as tmp:
        server = PulseServer(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def pipewire_server():
    """pipewire-pulse with a null sink, same interface as pulse_server; skipped if unavailable."""
    reason = pipewire_available()
    if reason:
        pytest.skip(f"PipeWire stack unavailable: {reason}")
    with tempfile.TemporaryDirectory(prefix="infiniloop-pw-") as tmp:
        server = PipeWireServer(Path(tmp))
        try:
            server.start()
        except RuntimeError as exc:
            server.stop()
            pytest.skip(f"PipeWire stack cannot start here: {str(exc).splitlines()[0]}")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def alsa_env(pulse_server):
    """ALSA PCMs testfile (file plugin) and testpulse (pulse plugin into pulse_server)."""
    home = Path(pulse_server.env["HOME"])
    file_path = pulse_server.root / "alsa-file.raw"
    write_asoundrc(home, file_path, pulse_server.server, pulse_server.sink)
    return AlsaEnv(env=dict(pulse_server.env), file_path=file_path)
