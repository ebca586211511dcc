"""The generator interface and what every backend shares.

A generator turns a prompt into a raw clip on disk (a WAV file). External
generators run as child processes at low CPU priority so the audio thread never
starves; this module owns how such a child is started, watched, timed out and
killed, and how the file it wrote is checked before anyone trusts it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import math
import os
import pty
import re
import secrets
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
from infiniloopd.text import printable

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
# Beyond these a header describes no clip a generator should have written.
MAX_SECONDS = 600.0
MAX_CHANNELS = 16
MAX_RATE = 384000


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
    # The header first: a clip that claims hours of audio (or a thousand channels) is
    # refused before anything is decoded into memory.
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeneratorError(f"{who}: {path} is not a readable audio file ({reason})") from None
    if not (1 <= info.channels <= MAX_CHANNELS and 1000 <= info.samplerate <= MAX_RATE):
        raise GeneratorError(
            f"{who}: {path}: {info.channels} channels at {info.samplerate} Hz is not a clip"
        )
    claimed = info.frames / info.samplerate
    longest = MAX_SECONDS if seconds is None else seconds * (1 + LENGTH_TOLERANCE) + 0.5
    if claimed > longest:
        raise GeneratorError(
            f"{who}: {path} is {claimed:.2f} s long (by its header), expected "
            + (f"about {seconds:g} s" if seconds is not None else f"at most {MAX_SECONDS:g} s")
        )
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


async def check_clip(path: Path, seconds: float | None, who: str) -> ClipFacts:
    """validate_wav off the event loop: decoding a clip takes a while, requests do not wait."""
    return await asyncio.to_thread(validate_wav, path, seconds, who)


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
            # Containers and some kernels refuse SCHED_IDLE; find out once, quietly.
            ok = _wrapper_works("chrt", "--idle", "0") is not None
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


# A generator's output is kept for its last message; a chatty one may not fill memory.
OUTPUT_KEEP = 64 * 1024
# Every generator child gets this in its environment, "<pid>-<start time>-<token>"; its
# helpers inherit it, even those that start their own session (setsid) and so escape
# a process-group kill: that is how they are found and killed when it is over.
TAG_ENV = "INFINILOOP_GENERATOR_TAG"
# After the child exits, how long its output may still trickle in (from helpers).
DRAIN_SECONDS = 2.0


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The child leads its own session, so its pid is the group id: this also reaches any
    # helpers it started (and the nice/chrt wrappers, which exec into it anyway).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tagged_processes(match: Callable[[str], bool]) -> list[int]:
    """Pids of this user's processes whose TAG_ENV value satisfies `match`."""
    found = []
    key = TAG_ENV.encode() + b"="
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read(1 << 20)
        except OSError:
            continue  # gone, or not ours
        for item in environ.split(b"\0"):
            if item.startswith(key):
                if match(item[len(key) :].decode("ascii", "replace")):
                    found.append(int(name))
                break
    return found


def kill_tagged(tag: str) -> int:
    """SIGKILL every process carrying generator tag `tag`; how many were found."""
    pids = _tagged_processes(lambda value: value == tag)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def kill_orphaned_generators() -> int:
    """Kill generator processes left by a daemon that is gone (crashed, SIGKILLed).

    The direct child dies with its daemon (parent-death signal); a helper that started
    its own session does not, and is found here by its tag at the next start.
    """

    def orphaned(value: str) -> bool:
        # The tag names its daemon by pid and start time: a pid reused since by another
        # process does not keep the helpers alive, and a live daemon's (or any other
        # live process's) generators are never touched.
        owner, _, rest = value.partition("-")
        started = rest.partition("-")[0]
        if not owner.isdigit():
            return False
        return _start_time(int(owner)) != started

    pids = _tagged_processes(orphaned)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log.warning("killed %d generator process(es) left by a previous daemon", len(pids))
    return len(pids)


def _start_time(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, as text), or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


_PDEATHSIG: list[str] | None = None


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL`: the child is killed by the kernel if the daemon dies.

    An exec wrapper like nice and chrt (no preexec_fn, which is not fork-safe with
    threads); the setting survives the execs into nice, chrt and the program.
    """
    global _PDEATHSIG
    if _PDEATHSIG is None:
        setpriv = _wrapper_works("setpriv", "--pdeathsig", "KILL")
        ok = setpriv is not None
        if not ok:
            log.info("setpriv --pdeathsig not available; generators are tracked by tag only")
        _PDEATHSIG = [setpriv, "--pdeathsig", "KILL"] if ok and setpriv else []
    return _PDEATHSIG


class _Tail:
    """The last OUTPUT_KEEP characters of a stream, without holding more."""

    def __init__(self) -> None:
        self._parts: collections.deque[str] = collections.deque()
        self._size = 0

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        while self._size - len(self._parts[0]) >= OUTPUT_KEEP:
            self._size -= len(self._parts.popleft())

    def text(self) -> str:
        return "".join(self._parts)[-OUTPUT_KEEP:]


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
    process tree and raises GeneratorError; cancelling the awaiting task kills it too.
    The output is read from a pipe of our own, never through asyncio's pipe transport:
    that one makes `wait()` wait for every holder of the pipe, so a helper left behind
    by the generator would hold the daemon up. Only the last 64 KB of output are kept.
    """
    # Resolve the program here: behind the nice/chrt wrappers a missing program would
    # only show up as the wrapper's exit 127.
    program = argv[0]
    resolved = shutil.which(program) if "/" not in program else program
    if resolved is None or not os.path.exists(resolved):
        raise GeneratorError(f"{who}: {program}: no such file (or not on PATH)")
    if os.path.isdir(resolved) or not os.access(resolved, os.X_OK):
        raise GeneratorError(f"{who}: {program}: not executable (permission denied)")
    cmd = [
        *_pdeathsig_prefix(),
        *(priority.prefix() if priority else []),
        resolved,
        *argv[1:],
    ]
    tag = f"{os.getpid()}-{_start_time(os.getpid())}-{secrets.token_hex(6)}"
    child_env = dict(os.environ if env is None else env)
    child_env[TAG_ENV] = tag
    loop = asyncio.get_running_loop()
    tail = _Tail()
    done_reading = loop.create_future()

    def feed(text: str) -> None:
        tail.add(text)
        if on_output is not None:
            on_output(text)

    if use_pty:
        master, slave = pty.openpty()
        # A real width, so "wide" bars are drawn instead of collapsing to nothing.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    else:
        master, slave = os.pipe()
    os.set_inheritable(master, False)
    start = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=child_env,
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

    os.close(slave)
    slave = -1
    os.set_blocking(master, False)

    def on_readable() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: every holder of the terminal has gone
        if not data:
            loop.remove_reader(master)
            if not done_reading.done():
                done_reading.set_result(None)
            return
        feed(decode(data))

    loop.add_reader(master, on_readable)

    async def kill_tree() -> None:
        # Scanning /proc for the tag takes a few ms per hundred processes: in a thread,
        # and shielded so that a second cancellation cannot leave helpers running.
        _kill_group(proc)
        if await asyncio.shield(asyncio.to_thread(kill_tagged, tag)):
            log.info("%s: killed helper processes the generator left running", who)

    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            await kill_tree()
            await proc.wait()
            raise GeneratorError(
                f"{who}: no result after {timeout:g} s (generator.timeout); killed it"
            ) from None
        # A helper may still hold the pipe or terminal; do not wait on it for long.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done_reading), DRAIN_SECONDS)
        # Whatever the generator left running (helpers in their own session included)
        # is over with it.
        await kill_tree()
    except asyncio.CancelledError:
        _kill_group(proc)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        await kill_tree()
        raise
    finally:
        if proc.returncode is None:
            _kill_group(proc)
        loop.remove_reader(master)
        _close(master, slave)
    rest = decoder_state["pending"].decode("utf-8", "replace")
    if rest:
        feed(rest)
    return ProcessResult(
        returncode=proc.returncode or 0, output=tail.text(), seconds=time.monotonic() - start
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
        # Tabs become spaces; other control characters cannot reach a one-line message.
        line = printable(" ".join(raw.split()))
        if line:
            lines.append(line)
    if not lines:
        return "no output"
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "panicked" in low:
            return line[:limit]
    return lines[-1][:limit]


def _wrapper_works(name: str, *args: str) -> str | None:
    """The path of exec wrapper `name` if `name ARGS true` succeeds here, else None."""
    path = shutil.which(name)
    if path is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [path, *args, "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
        )
        if done.returncode == 0:
            return path
    return None
