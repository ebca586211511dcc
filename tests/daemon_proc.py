"""Runs the real daemon as a subprocess in temporary XDG dirs, driven by infiniloopctl."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def base_config(out: Path) -> dict[str, Any]:
    """Short clips, short crossfades, a real-time WAV file as the sound card."""
    return {
        "generator": {"backend": "synth", "seconds": 6, "prefetch": 1},
        "output": {"backend": "file", "path": str(out), "realtime": True, "format": "pcm16"},
        "playback": {"crossfade": 1.0, "min_play": 3.0, "volume": 80},
        "analysis": {"min_loop": 2.0},
    }


class NotifyListener:
    """A real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def lines(self) -> list[str]:
        return [line for m in list(self.messages) for line in m.split("\n")]

    def wait_for(self, prefix: str, timeout: float = 20.0, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines()[after:]:
                if line.startswith(prefix):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} notification; got {self.lines()[-10:]}")

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class Daemon:
    def __init__(
        self,
        root: Path,
        config: dict[str, Any] | None = None,
        notify: bool = False,
        runtime_env: bool = True,
    ):
        self.root = root
        self.out = root / "out.wav"
        self.config_path = root / "config.yaml"
        self.write_config(config or base_config(self.out))
        self.env = dict(os.environ)
        for var in ("INFINILOOP_ENDPOINT", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            self.env.pop(var, None)
        for var, sub in (
            ("XDG_RUNTIME_DIR", "run"),
            ("XDG_STATE_HOME", "state"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_MUSIC_DIR", "music"),
        ):
            (root / sub).mkdir(mode=0o700, exist_ok=True)
            self.env[var] = str(root / sub)
        self.runtime = root / "run" / "infiniloop"
        if not runtime_env:  # as under cron: the daemon and client fall back alike
            del self.env["XDG_RUNTIME_DIR"]
            from infiniloopd import paths

            saved = os.environ.pop("XDG_RUNTIME_DIR", None)
            try:
                self.runtime = paths.runtime_dir()
            finally:
                if saved is not None:
                    os.environ["XDG_RUNTIME_DIR"] = saved
        self.music = root / "music" / "infiniloop"
        self.notify: NotifyListener | None = None
        if notify:
            self.notify = NotifyListener(root / "notify.sock")
            self.env["NOTIFY_SOCKET"] = str(self.notify.path)
            self.env["WATCHDOG_USEC"] = "1000000"
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "daemon.log"

    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        self.config_path.write_text(text)

    # --- process ------------------------------------------------------------------------

    def launch(self) -> subprocess.Popen:
        """Start the daemon process (its output appended to the log) without waiting."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infiniloopd", "--config", str(self.config_path)],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self.proc

    def start(self, wait_loop: bool = True) -> Daemon:
        self.launch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            if self.ctl("ping", "--timeout", "1").returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"daemon did not answer:\n{self.log()}")
        if wait_loop:
            self.wait_status(lambda s: s["loop"] is not None, 40, "a first loop")
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{self.log()}") from None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.notify is not None:
            self.notify.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- the client ---------------------------------------------------------------------

    def ctl(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "infiniloopctl", *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def ok(self, *args: str) -> str:
        r = self.ctl(*args)
        assert r.returncode == 0, (args, r.returncode, r.stderr)
        return r.stdout

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.ok(*args, "--json"))

    def status(self) -> dict[str, Any]:
        return self.json("status")

    def wait_status(self, pred, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if pred(st):
                return st
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; status {st}\n{self.log()[-3000:]}")

    # --- what was played ----------------------------------------------------------------

    def samples(self, path: Path | None = None) -> np.ndarray:
        """Everything in the WAV so far, float (frames, 2), tolerant of a block in flight."""
        raw = (path or self.out).read_bytes()
        start = raw.index(b"data") + 8
        body = raw[start:]
        usable = len(body) // 4 * 4
        return np.frombuffer(body[:usable], dtype="<i2").reshape(-1, 2).astype(np.float32) / 32768

    def frames(self, path: Path | None = None) -> int:
        return len(self.samples(path))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def window_rms(x: np.ndarray, rate: int, ms: float = 20.0) -> np.ndarray:
    n = int(rate * ms / 1000)
    k = len(x) // n
    if k == 0:
        return np.zeros(0)
    w = x[: k * n].reshape(k, n, -1).astype(np.float64)
    return np.sqrt(np.mean(np.square(w), axis=(1, 2)))
