"""The generator interface and what every backend shares.

A generator turns a prompt into a raw clip on disk (a WAV file). External
generators run as child processes at low CPU priority so the audio thread never
starves; this module owns how such a child is started, watched, timed out and
killed, and how the file it wrote is checked before anyone trusts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from infiniloopd.errors import UserError

log = logging.getLogger(__name__)

ProgressFn = Callable[[float], None]


class GeneratorError(UserError):
    """A generator that could not produce a usable clip (one line: what failed and why)."""


@runtime_checkable
class Generator(Protocol):
    """Something that writes a clip for a prompt."""

    name: str
    model: str

    async def generate(
        self, prompt: str, seconds: float, out: Path, progress: ProgressFn, *, seed: int
    ) -> Path: ...


# --- checking what a generator wrote -----------------------------------------------------

# A clip may be a little shorter or longer than asked (token rounding, decoder padding);
# more than this and something went wrong.
LENGTH_TOLERANCE = 0.2
# Peak below this (about -80 dBFS) is silence, not quiet music.
SILENCE_PEAK = 1e-4


@dataclass
class ClipFacts:
    """What validate_wav learned about a clip."""

    path: Path
    rate: int
    channels: int
    seconds: float
    peak: float


def validate_wav(path: Path, seconds: float | None, who: str) -> ClipFacts:
    """Check that `path` is a decodable, finite, audible clip of about `seconds` seconds.

    Raises GeneratorError with a one-line message naming `who` and the file.
    """
    import numpy as np
    import soundfile as sf

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise GeneratorError(f"{who}: wrote no file at {path}") from None
    except OSError as exc:
        raise GeneratorError(f"{who}: cannot read {path}: {exc.strerror}") from None
    if size == 0:
        raise GeneratorError(f"{who}: wrote an empty file {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeneratorError(f"{who}: {path} is not a readable audio file ({reason})") from None
    frames, channels = data.shape
    length = frames / rate if rate else 0.0
    if frames == 0:
        raise GeneratorError(f"{who}: {path} contains no audio")
    if not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise GeneratorError(f"{who}: {path} contains {bad} NaN/infinite samples")
    if seconds is not None:
        lo, hi = seconds * (1 - LENGTH_TOLERANCE), seconds * (1 + LENGTH_TOLERANCE) + 0.5
        if not lo <= length <= hi:
            raise GeneratorError(
                f"{who}: {path} is {length:.2f} s long, expected about {seconds:g} s"
            )
    peak = float(np.abs(data).max())
    if peak < SILENCE_PEAK:
        raise GeneratorError(f"{who}: {path} is silent (peak {_db(peak)})")
    return ClipFacts(path=path, rate=int(rate), channels=int(channels), seconds=length, peak=peak)


def _db(x: float) -> str:
    return "-inf dBFS" if x <= 0 else f"{20 * math.log10(x):.0f} dBFS"


# --- running a child process -------------------------------------------------------------


@dataclass
class ProcessResult:
    returncode: int
    output: str  # everything it wrote to stdout/stderr (decoded, lossy)
    seconds: float


def describe_exit(returncode: int) -> str:
    """'exit 1' or 'killed by SIGSEGV' for a subprocess return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def check_exit(result: ProcessResult, who: str) -> None:
    """A non-zero exit as one GeneratorError line: how it ended and its last message."""
    if result.returncode != 0:
        raise GeneratorError(
            f"{who} failed ({describe_exit(result.returncode)}): {last_message(result.output)}"
        )


class LowPriority:
    """Builds the command prefix that runs a child with `nice` and, when allowed, SCHED_IDLE.

    Done with the `nice` and `chrt` programs rather than preexec_fn: the priority is in
    place before the child's first instruction (and before it starts any thread), and
    the asyncio subprocess machinery stays fork-safe.
    """

    def __init__(self, nice: int, idle: bool) -> None:
        self.nice = nice
        self.idle = idle
        self._idle_ok: bool | None = None

    def _idle_allowed(self) -> bool:
        if self._idle_ok is None:
            chrt = shutil.which("chrt")
            ok = False
            if chrt:
                # Containers and some kernels refuse SCHED_IDLE; find out once, quietly.
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    ok = (
                        subprocess.run(
                            [chrt, "--idle", "0", "true"],
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            timeout=5,
                        ).returncode
                        == 0
                    )
            if not ok:
                log.info("SCHED_IDLE not available for generators; using nice only")
            self._idle_ok = ok
        return self._idle_ok

    def prefix(self) -> list[str]:
        cmd: list[str] = []
        if self.nice > 0 and (nice := shutil.which("nice")):
            cmd += [nice, "-n", str(self.nice)]
        if self.idle and self._idle_allowed():
            cmd += [shutil.which("chrt") or "chrt", "--idle", "0"]
        return cmd


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The child leads its own session, so its pid is the group id: this also reaches any
    # helpers it started (and the nice/chrt wrappers, which exec into it anyway).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    who: str,
    on_output: Callable[[str], None] | None = None,
    use_pty: bool = False,
    priority: LowPriority | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessResult:
    """Run `argv` (no shell) to completion, streaming its output to `on_output`.

    With `use_pty`, stdout and stderr are a pseudo-terminal so programs that draw
    progress bars only on a terminal still draw them. A timeout kills the whole
    process group and raises GeneratorError; cancelling the awaiting task kills it too.
    """
    # Resolve the program here: behind the nice/chrt wrappers a missing program would
    # only show up as the wrapper's exit 127.
    program = argv[0]
    resolved = shutil.which(program) if "/" not in program else program
    if resolved is None or not os.path.exists(resolved):
        raise GeneratorError(f"{who}: {program}: no such file (or not on PATH)")
    if os.path.isdir(resolved) or not os.access(resolved, os.X_OK):
        raise GeneratorError(f"{who}: {program}: not executable (permission denied)")
    cmd = [*(priority.prefix() if priority else []), resolved, *argv[1:]]
    loop = asyncio.get_running_loop()
    chunks: list[str] = []
    master = slave = -1
    done_reading = loop.create_future()

    def feed(text: str) -> None:
        chunks.append(text)
        if on_output is not None:
            on_output(text)

    if use_pty:
        master, slave = pty.openpty()
        # A real width, so "wide" bars are drawn instead of collapsing to nothing.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        out_target: int = slave
        err_target: int = slave
    else:
        out_target = asyncio.subprocess.PIPE
        err_target = asyncio.subprocess.STDOUT
    start = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_target,
            stderr=err_target,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        _close(master, slave)
        raise GeneratorError(f"{who}: {argv[0]}: no such file") from None
    except PermissionError:
        _close(master, slave)
        raise GeneratorError(f"{who}: {argv[0]}: not executable (permission denied)") from None
    except OSError as exc:
        _close(master, slave)
        raise GeneratorError(f"{who}: cannot start {argv[0]}: {exc.strerror}") from None

    decoder_state = {"pending": b""}

    def decode(data: bytes) -> str:
        buf = decoder_state["pending"] + data
        # Keep an incomplete UTF-8 tail for the next read instead of mangling it.
        cut = len(buf)
        for back in range(1, min(4, len(buf)) + 1):
            byte = buf[-back]
            if byte & 0xC0 == 0x80:
                continue
            if byte >= 0xC0:
                need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                if back < need:
                    cut = len(buf) - back
            break
        decoder_state["pending"] = buf[cut:]
        return buf[:cut].decode("utf-8", "replace")

    reader_task: asyncio.Task[None] | None = None
    if use_pty:
        os.close(slave)
        slave = -1
        os.set_blocking(master, False)

        def on_readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""  # EIO: every holder of the slave side has gone
            if not data:
                loop.remove_reader(master)
                if not done_reading.done():
                    done_reading.set_result(None)
                return
            feed(decode(data))

        loop.add_reader(master, on_readable)
    else:
        assert proc.stdout is not None
        stream = proc.stdout

        async def pump() -> None:
            while data := await stream.read(65536):
                feed(decode(data))
            if not done_reading.done():
                done_reading.set_result(None)

        reader_task = asyncio.create_task(pump())

    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise GeneratorError(
                f"{who}: no result after {timeout:g} s (generator.timeout); killed it"
            ) from None
        # A grandchild may still hold the terminal; do not wait on it forever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done_reading), 2.0)
    except asyncio.CancelledError:
        _kill_group(proc)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        raise
    finally:
        if proc.returncode is None:
            _kill_group(proc)
        if use_pty:
            loop.remove_reader(master)
        if reader_task is not None:
            reader_task.cancel()
        _close(master, slave)
    tail = decoder_state["pending"].decode("utf-8", "replace")
    if tail:
        feed(tail)
    return ProcessResult(
        returncode=proc.returncode or 0, output="".join(chunks), seconds=time.monotonic() - start
    )


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """Remove terminal escape sequences (colours, cursor moves) from program output."""
    return _ANSI.sub("", text)


def last_message(output: str, limit: int = 200) -> str:
    """The most telling line of a failed program's output, for a one-line error."""
    lines = []
    for raw in strip_ansi(output).replace("\r", "\n").splitlines():
        line = " ".join(raw.split())
        if line:
            lines.append(line)
    if not lines:
        return "no output"
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "panicked" in low:
            return line[:limit]
    return lines[-1][:limit]
