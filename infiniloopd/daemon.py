"""The daemon: wires the core Session to its frontends, signals and systemd.

One asyncio loop on the main thread owns all state (in `core.session`); this module
only builds the parts, starts and stops them in order, handles signals and talks to
systemd (sd_notify, the watchdog).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from infiniloopd import __version__, paths, protocol
from infiniloopd.config import Config, load_config
from infiniloopd.core.session import Session
from infiniloopd.errors import UserError

log = logging.getLogger(__name__)

HEARTBEAT_FRESH = 2.0  # an audio thread silent for longer than this is hung


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None, help="config file (default: the user's config.yaml)"
    )
    parser.add_argument(
        "--endpoint", default=None, help="control endpoint (ipc://PATH or tcp://HOST:PORT)"
    )


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)  # a UserError here is printed by __main__, exit 1
    logging.getLogger().setLevel(cfg.log_level.upper())
    if getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.DEBUG)
    lock = DaemonLock(protocol.lock_path())
    lock.acquire()
    try:
        return asyncio.run(Daemon(cfg, args.config, args.endpoint).run())
    finally:
        lock.release()


# --- one daemon per user ----------------------------------------------------------------


class DaemonLock:
    """An flock on a file in the runtime dir, holding the running daemon's PID."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        paths.ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = protocol.running_pid()
            who = f"pid {pid}" if pid else "another process"
            how = f" or `kill {pid}`" if pid else ""
            raise UserError(
                f"already running ({who}, lock {self.path}); stop it with "
                f"`systemctl --user stop infiniloop`{how}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        # Emptied, not removed: removing a lock file races with the next daemon opening it.
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)
        self.fd = None


# --- systemd ----------------------------------------------------------------------------


class Notifier:
    """sd_notify(3): datagrams to $NOTIFY_SOCKET; does nothing when not under systemd."""

    def __init__(self) -> None:
        address = os.environ.pop("NOTIFY_SOCKET", "")  # not for our child processes
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        usec = os.environ.pop("WATCHDOG_USEC", "")
        wpid = os.environ.pop("WATCHDOG_PID", "")
        self.watchdog: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not wpid or wpid == str(os.getpid())):
            self.watchdog = int(usec) / 1e6
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, *lines: str) -> None:
        if self._sock is None or self.address is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --- the daemon -------------------------------------------------------------------------


class Daemon:
    """Builds the Session and its frontends; starts and stops them; talks to systemd."""

    def __init__(self, cfg: Config, config_path: Path | None, endpoint: str | None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.endpoint_override = endpoint
        self.notifier = Notifier()
        self.stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task] = []
        self.session = Session(cfg, config_path, notify=self.notifier.send)
        self.frontends: list[Any] = []

    async def run(self) -> int:
        from infiniloopd.frontends.zmq.frontend import ZmqFrontend

        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        session = self.session
        # The control endpoint and its keys are checked before any sound is made.
        self.control = ZmqFrontend(session, self.endpoint_override)
        await session.open()
        try:
            await self.control.start()
        except BaseException:
            session.player.close()
            raise
        await session.start()
        self._install_signals()
        self.tasks += [
            asyncio.create_task(self.control.serve(), name="control"),
            asyncio.create_task(self._systemd_loop(), name="systemd"),
        ]
        self.notifier.send("READY=1", f"STATUS={session.status_text()}", f"MAINPID={os.getpid()}")
        log.info(
            "infiniloopd %s running (pid %d): output %s, prompt %r",
            __version__,
            os.getpid(),
            session.player.status().output,
            session.prompt,
        )
        self.frontends = build_frontends(session, self.cfg)
        for frontend in self.frontends:
            await _start_frontend(frontend)
        session.emit("started", {"pid": os.getpid(), "version": __version__})
        await self.stop_event.wait()
        await self._shutdown()
        return 0

    def _install_signals(self) -> None:
        assert self.loop is not None and self.stop_event is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._on_stop_signal, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _on_stop_signal(self, sig: int) -> None:
        log.info("%s: fading out and stopping", signal.Signals(sig).name)
        assert self.stop_event is not None
        self.stop_event.set()

    def _on_hup(self) -> None:
        task = asyncio.ensure_future(self._reload_logged())
        self.tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task) -> None:
        with contextlib.suppress(ValueError):
            self.tasks.remove(task)

    async def _reload_logged(self) -> None:
        with contextlib.suppress(UserError):  # already logged and published by reload()
            await self.session.reload()

    async def _shutdown(self) -> None:
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        self.session.emit("stopping", {})
        await self.session.fade_and_save()
        await self.control.close()  # a `save` in progress finishes and answers
        for frontend in self.frontends:
            with contextlib.suppress(Exception):
                await frontend.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.session.close()
        self.notifier.close()
        log.info("stopped")

    async def _systemd_loop(self) -> None:
        period = min(1.0, self.notifier.watchdog / 2) if self.notifier.watchdog else 1.0
        while True:
            await asyncio.sleep(period)
            self.session._refresh_status()
            if self.notifier.watchdog is None:
                continue
            st = self.session.player.status()
            # Only the audio thread moves the heartbeat: if it hangs, we stop petting
            # the watchdog and systemd restarts us.
            if time.monotonic() - st.heartbeat < HEARTBEAT_FRESH and self.session.player.alive:
                self.notifier.send("WATCHDOG=1")
            else:
                log.error("audio thread unresponsive for %.1f s", time.monotonic() - st.heartbeat)


def build_frontends(session: Session, cfg: Config) -> list[Any]:
    """The ways in besides the control socket, as the config asks."""
    frontends: list[Any] = []
    if cfg.mpris:
        from infiniloopd.frontends.mpris import MprisFrontend

        frontends.append(MprisFrontend(session, cfg.mpris))
    if cfg.mpd is not None:
        from infiniloopd.frontends.mpd import MpdFrontend

        frontends.append(MpdFrontend(session, cfg.mpd))
    return frontends


async def _start_frontend(frontend: Any) -> None:
    # A frontend that cannot start (no session bus, port in use) says so once and the
    # daemon plays on without it.
    try:
        await frontend.start()
    except Exception as exc:
        log.warning("%s: not started: %s", type(frontend).__name__, exc)
