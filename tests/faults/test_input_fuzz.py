"""Seeded fuzzing of every reader of outside input: the control socket's decoder and
argument validation, the config loader, the state loader and the sidecar reader.

Thousands of random byte strings, random JSON and random YAML (with the nasty parts a
generator of random documents rarely hits on its own: lone surrogates, control
characters, huge integers, deep nesting, anchors and aliases, wrong types). Each input
is either accepted or refused with the reader's one error type and a one-line message
that is valid text; anything else (a traceback) fails the test and prints the input.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from infiniloopd import protocol
from infiniloopd.config import ConfigError, load_config
from infiniloopd.errors import UserError
from infiniloopd.frontends.zmq.server import Arg, Command, validate
from infiniloopd.library import read_sidecar
from infiniloopd.state import load_state, save_state
from infiniloopd.text import text_problem

CASES = 3000
SEED = 20261202

NASTY_STRINGS = [
    "",
    " ",
    "calm \ud800 pads",
    "\udcff",
    "bell\x07",
    "esc\x1b[2J",
    "nul\0",
    "c1\x9b",
    "tab\tand\nnewline",
    "é🎵",
    "x" * 5000,
    "../../etc/passwd",
    "-rf",
    "{prompt}",
    "$(touch /tmp/infiniloop-pwned-1)",
]
NASTY_NUMBERS = [0, -1, 1, 10**400, -(10**400), 1e308, 2**63, 0.5, 48000, 3.0, 100, 101]


@pytest.fixture
def fast_dir(tmp_path):
    """A scratch dir in memory when there is one: thousands of file writes in seconds."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="infiniloop-fuzz-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def one_line(message: str) -> None:
    assert message, "empty message"
    assert "\n" not in message and "Traceback" not in message, message
    message.encode("utf-8")  # strict: no lone surrogate reaches a message
    assert len(message) < 2000, len(message)


def random_scalar(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(NASTY_STRINGS)
    if pick < 0.5:
        return rng.choice(NASTY_NUMBERS)
    if pick < 0.6:
        return rng.choice([None, True, False])
    if pick < 0.8:
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 12)))
    return rng.uniform(-1e6, 1e6)


def random_value(rng: random.Random, keys: list[str], depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 4 or pick < 0.5:
        return random_scalar(rng)
    if pick < 0.75:
        return [random_value(rng, keys, depth + 1) for _ in range(rng.randint(0, 4))]
    out: dict[Any, Any] = {}
    for _ in range(rng.randint(0, 6)):
        key = rng.choice(keys) if rng.random() < 0.8 else random_scalar(rng)
        if isinstance(key, (list, dict)):
            continue
        out[key] = random_value(rng, keys, depth + 1)
    return out


def deep(n: int) -> str:
    return "[" * n + "]" * n


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """Random damage: truncation, flipped bytes, inserted junk."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.3 and data:
            del data[rng.randrange(len(data)) :]
        elif op < 0.7 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            pos = rng.randint(0, len(data))
            data[pos:pos] = rng.choice([b"\xff", b"\0", b"&a ", b"*a", b"\\ud800", b"[", b"{"])
    return bytes(data)


# --- the control socket ---------------------------------------------------------------

COMMANDS = {
    "prompt": Command("prompt", lambda a: a, (Arg("text", max_len=1000), Arg("keep", "bool"))),
    "preset": Command("preset", lambda a: a, (Arg("name", required=True, max_len=40),)),
    "volume": Command("volume", lambda a: a, (Arg("value", "step", lo=0, hi=100),)),
    "crossfade": Command("crossfade", lambda a: a, (Arg("seconds", "float", lo=0, hi=60),)),
    "save": Command("save", lambda a: a, (Arg("path", "path", max_len=4096), Arg("force", "bool"))),
    "events": Command("events", lambda a: a, (Arg("since", "int", lo=0, hi=2**62),)),
    "model": Command("model", lambda a: a, (Arg("name", choices=("small", "medium")),)),
}
ARG_NAMES = ["text", "keep", "name", "value", "seconds", "path", "force", "since", "v"]


def socket_input(rng: random.Random, i: int) -> list[bytes]:
    kind = i % 5
    if kind == 0:
        return [rng.randbytes(rng.randint(0, 300))]
    if kind == 1:  # a well-formed request with random arguments
        cmd = rng.choice([*COMMANDS, "bogus", ""])
        args = random_value(rng, ARG_NAMES)
        msg = {"v": rng.choice([1, 1, 1, 2, "1", None]), "cmd": cmd, "args": args}
        return [json.dumps(msg).encode()]
    if kind == 2:  # one argument of a real command, a nasty value
        name = rng.choice(sorted(COMMANDS))
        arg = rng.choice(COMMANDS[name].args).name
        msg = {"v": 1, "cmd": name, "args": {arg: random_scalar(rng)}}
        return [json.dumps(msg).encode()]
    if kind == 3:
        return [
            b'{"v": 1, "cmd": "prompt", "args": {"text": '
            + deep(rng.randint(1, 3000)).encode()
            + b"}}"
        ]
    text = json.dumps({"v": 1, "cmd": "prompt", "args": {"text": rng.choice(NASTY_STRINGS)}})
    return [mutate(rng, text.encode())] * rng.choice([1, 1, 2])


def test_socket_decoder_and_validation():
    rng = random.Random(SEED)
    accepted = refused = 0
    for i in range(CASES):
        frames = socket_input(rng, i)
        try:
            cmd, args = protocol.decode_request(frames)
            command = COMMANDS.get(cmd)
            if command is None:
                raise protocol.ProtocolError(protocol.UNKNOWN_COMMAND, f"unknown {cmd[:40]!r}")
            out = validate(command, args)
        except protocol.ProtocolError as exc:
            one_line(str(exc))
            refused += 1
            continue
        except Exception as exc:  # a bug: show the input that caused it
            raise AssertionError(f"case {i}: {frames!r:.300}: {exc!r}") from exc
        accepted += 1
        for value in out.values():
            if isinstance(value, str):  # every text that got in is valid text
                assert text_problem(value, max_len=4096, nonempty=False) is None, (i, value)
    assert accepted > 100 and refused > 1000, (accepted, refused)


# --- the config loader ----------------------------------------------------------------

CONFIG_KEYS = [
    "prompt", "generator", "output", "playback", "analysis", "library", "control",
    "backend", "seconds", "model", "rate", "channels", "volume", "crossfade", "endpoint",
    "generatr", "path", "command", "min_loop", "max_loop", "log_level",
]  # fmt: skip


def config_text(rng: random.Random, i: int) -> bytes:
    kind = i % 5
    if kind == 0:
        return rng.randbytes(rng.randint(0, 400))
    data = random_value(rng, CONFIG_KEYS)
    if kind in (1, 2) or not isinstance(data, dict):
        data = {rng.choice(CONFIG_KEYS[:7]): data}
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C one: fuzzing in seconds
    try:
        text = yaml.dump(data, Dumper=dumper, allow_unicode=True)
        text = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    except (yaml.YAMLError, UnicodeError):
        text = b"prompt: x\n"
    if kind == 3:
        return mutate(rng, text)
    if kind == 4:
        extra = rng.choice(
            [
                b"a: &a [1,2,3]\nb: [*a, *a, *a]\n",
                b"prompt: " + deep(rng.randint(30, 3000)).encode() + b"\n",
                b"output:\n  rate: " + b"9" * rng.randint(300, 6000) + b"\n",
                b"playback: {crossfade: 1e400}\n",
                b'prompt: "\\ud800"\n',
            ]
        )
        return text + extra
    return text


def test_config_loader(fast_dir):
    rng = random.Random(SEED + 1)
    path = fast_dir / "config.yaml"
    loaded = refused = 0
    for i in range(CASES):
        raw = config_text(rng, i)
        path.write_bytes(raw)
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            assert exc.problems and str(exc) == "\n".join(exc.problems)
            for line in exc.problems:
                one_line(line)
                assert line.startswith(f"{path}:"), line
            refused += 1
            continue
        except Exception as exc:
            raise AssertionError(f"case {i}: {raw!r:.300}: {exc!r}") from exc
        loaded += 1
        assert text_problem(cfg.prompt, max_len=1000) is None
    assert loaded > 50 and refused > 1000, (loaded, refused)


# --- the state loader -----------------------------------------------------------------

STATE_KEYS = ["prompt", "preset", "volume", "paused", "crossfade", "min_play", "generator",
              "stats", "history", "saved_at", "id", "started", "bpm", "clips", "model"]  # fmt: skip


def state_bytes(rng: random.Random, i: int) -> bytes:
    kind = i % 4
    if kind == 0:
        return rng.randbytes(rng.randint(0, 300))
    data = random_value(rng, STATE_KEYS)
    if kind == 1 and not isinstance(data, dict):
        data = {"prompt": data, "history": [data], "stats": {"m": data}}
    raw = json.dumps(data).encode()
    if kind == 3:
        return mutate(rng, raw)
    return raw


def test_state_loader(fast_dir, caplog):
    caplog.set_level(logging.WARNING, "infiniloopd.state")
    rng = random.Random(SEED + 2)
    path = fast_dir / "state.json"
    for i in range(CASES):
        raw = state_bytes(rng, i)
        path.write_bytes(raw)
        caplog.clear()
        try:
            st = load_state(path)
            save_state(st, path)  # what was read can be written back...
            again = load_state(path)  # ...and read again, unchanged
        except Exception as exc:
            raise AssertionError(f"case {i}: {raw!r:.300}: {exc!r}") from exc
        path.read_bytes().decode("utf-8")
        again.saved_at = st.saved_at
        assert again == st, i
        for record in caplog.records:
            one_line(record.getMessage())
        for p in fast_dir.glob("state.json.corrupt-*"):
            p.unlink()


# --- the sidecar reader ---------------------------------------------------------------

SIDECAR = {
    "id": "20260101-000000-abcdef",
    "prompt": "calm",
    "generator": "synth",
    "model": "x",
    "seconds": 4.0,
    "bpm": 90.0,
    "start": 0,
    "end": 192000,
    "rate": 48000,
    "channels": 2,
    "loudness_lufs": -18.0,
    "created": 1.7e9,
    "last_played": None,
    "score": 0.5,
    "source_seconds": 8.0,
}


def sidecar_bytes(rng: random.Random, i: int) -> bytes:
    kind = i % 4
    if kind == 0:
        return rng.randbytes(rng.randint(0, 300))
    data: Any = dict(SIDECAR)
    for _ in range(rng.randint(1, 3)):
        data[rng.choice([*SIDECAR, "grid"])] = random_value(rng, list(SIDECAR))
    if kind == 1:
        data = random_value(rng, list(SIDECAR))
    raw = json.dumps(data).encode()
    return mutate(rng, raw) if kind == 3 else raw


def test_sidecar_reader(fast_dir):
    rng = random.Random(SEED + 3)
    path = fast_dir / f"{SIDECAR['id']}.json"
    path.write_text(json.dumps(SIDECAR))
    assert read_sidecar(path).rate == 48000  # the untouched one is accepted
    read = refused = 0
    for i in range(CASES):
        raw = sidecar_bytes(rng, i)
        path.write_bytes(raw)
        try:
            entry = read_sidecar(path)
        except UserError as exc:
            one_line(str(exc))
            assert str(exc).startswith(str(path)), str(exc)
            refused += 1
            continue
        except Exception as exc:
            raise AssertionError(f"case {i}: {raw!r:.300}: {exc!r}") from exc
        read += 1
        for text in (entry.id, entry.prompt, entry.generator, entry.model):
            assert text_problem(text, max_len=1000, nonempty=False) is None
    assert read > 20 and refused > 1000, (read, refused)


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_deep_json_everywhere_is_one_line(tmp_path, n):
    raw = ("[" * n + "]" * n).encode()
    with pytest.raises(protocol.ProtocolError):
        cmd, args = protocol.decode_request([raw])
    side = tmp_path / "x.json"
    side.write_bytes(raw)
    with pytest.raises(UserError) as info:
        read_sidecar(side)
    one_line(str(info.value))
    state = tmp_path / "state.json"
    state.write_bytes(raw)
    assert load_state(state).prompt is None
    assert not Path(state).exists()  # moved aside
