"""Bad control input: 10,000 random and malformed messages (fixed seed) while the daemon
plays; every reply is an error reply, playback has no gap, and `ping` still answers.
Path traversal in `save` is refused and nothing a command carries reaches a shell."""

from __future__ import annotations

import json
import random
import string
import time
from pathlib import Path

import pytest
import zmq

from tests.faults.conftest import Pinger, assert_no_gap, fault_config, request, start_daemon

pytestmark = pytest.mark.slow

MESSAGES = 10_000
ERROR_CODES = {"bad_request", "unknown_command", "bad_argument", "too_large", "not_found"}

# Values each command must refuse (none of them is a query, i.e. none is null).
BAD_ARGS: dict[str, dict[str, list]] = {
    "volume": {"value": [[], {}, "loud", "++5", "5x", 101, -1000, 1e300, [50]]},
    "crossfade": {"seconds": [-1, 61, "soon", [], {}, 1e300, "nan"]},
    "min-play": {"seconds": [-5, "later", [1], 1e12]},
    "duration": {"seconds": [2, 31, "long", []]},
    "model": {"name": ["huge", 7, [], "x" * 2000]},
    "generator": {"name": ["bogus", 3, {}]},
    "prompt": {"text": ["x" * 5000, 42, [], {}, "a\0b"], "keep": ["yes", 2]},
    "save": {"path": ["../../etc/x", "../../etc/x.wav", "/etc/x.wav", "x.mp3", 12, []]},
    "library": {"limit": [-1, "ten", 1.5, []]},
    "events": {"since": ["x", [], {}]},
    "preset": {"name": ["no-such-preset-xyz", 5, []]},
}
RAW_BAD = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"ping"',
    b'{"cmd": "crossfade", "args": {"seconds": Infinity}}',
    b'{"cmd": "crossfade", "args": {"seconds": NaN}}',
    b'{"v": 2, "cmd": "ping", "args": {}}',
    b'{"v": "1", "cmd": "ping"}',
    b'{"cmd": 5}',
    b'{"cmd": null}',
    b'{"cmd": "ping", "args": [1]}',
    b'{"cmd": "ping", "args": {"bogus": 1}}',
    b'{"cmd": "ping", "args": "x"}',
    b'{"args": {}}',
    b"\xff\xfe{}",
    b'{"cmd": "ping"' + b"}" * 3,
]


def bad_message(rng: random.Random, i: int) -> list[bytes]:
    kind = i % 10
    if kind == 0:  # binary frame
        return [rng.randbytes(rng.randint(1, 2000))]
    if kind == 1:  # truncated JSON of a valid request
        text = json.dumps({"v": 1, "cmd": "volume", "args": {"value": rng.randint(0, 100)}})
        return [text[: rng.randint(1, len(text) - 1)].encode()]
    if kind == 2:  # multipart
        return [b'{"v": 1, "cmd": "ping", "args": {}}'] * rng.randint(2, 4)
    if kind == 3:  # unknown command
        name = "".join(rng.choices(string.ascii_letters + "-_", k=rng.randint(1, 30)))
        return [json.dumps({"v": 1, "cmd": "x" + name, "args": {}}).encode()]
    if kind == 4:  # huge strings (under the size limit)
        n = rng.randint(10_000, 60_000)
        which = rng.choice(["prompt", "text", "key"])
        if which == "key":
            msg = {"v": 1, "cmd": "ping", "args": {"k" * n: 1}}
        elif which == "prompt":
            msg = {"v": 1, "cmd": "prompt", "args": {"text": "y" * n}}
        else:
            msg = {"v": 1, "cmd": "z" * n, "args": {}}
        return [json.dumps(msg).encode()]
    if kind == 5:  # deep nesting
        depth = rng.randint(100, 5000)
        return [b'{"v": 1, "cmd": "ping", "args": ' + b"[" * depth + b"]" * depth + b"}"]
    if kind == 6:  # raw malformed objects
        return [rng.choice(RAW_BAD)]
    # wrong types and out-of-range values for real commands
    cmd = rng.choice(sorted(BAD_ARGS))
    arg = rng.choice(sorted(BAD_ARGS[cmd]))
    value = rng.choice(BAD_ARGS[cmd][arg])
    return [json.dumps({"v": 1, "cmd": cmd, "args": {arg: value}}).encode()]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    d = start_daemon(root, fault_config(root / "out.wav", playback={"min_play": 3600}))
    try:
        yield d
    finally:
        d.stop()
        d.close()


def test_ten_thousand_bad_messages(daemon):
    before = daemon.status()
    rng = random.Random(20240808)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{daemon.runtime}/control.sock")
    codes: dict[str, int] = {}
    start = daemon.frames()
    try:
        with Pinger(daemon, period=0.5) as pinger:
            for i in range(MESSAGES):
                frames = bad_message(rng, i)
                sock.send_multipart(frames)
                assert sock.poll(3000), f"no reply to message {i}: {frames[0][:100]!r}"
                reply = json.loads(sock.recv())
                assert reply["ok"] is False, (i, frames[0][:100], reply)
                err = reply["error"]
                assert isinstance(err["message"], str) and err["message"], reply
                assert "\n" not in err["message"] and "Traceback" not in err["message"]
                codes[err["code"]] = codes.get(err["code"], 0) + 1
    finally:
        sock.close()
    pinger.check()
    assert set(codes) <= ERROR_CODES, codes
    assert {"bad_request", "unknown_command", "bad_argument"} <= set(codes), codes
    assert daemon.ok("ping").strip() == "pong"
    after = daemon.status()
    # Nothing the fuzz sent changed a setting.
    for key in ("volume", "crossfade", "min_play", "prompt", "generator", "state"):
        assert after[key] == before[key], key
    assert_no_gap(daemon.samples()[start:], "during the fuzz")
    assert "Traceback" not in daemon.log()


@pytest.mark.parametrize(
    "path", ["../../etc/x", "../../etc/x.wav", "/etc/infiniloop-x.wav", "link/x.wav"]
)
def test_save_outside_the_music_dir_is_refused(daemon, path):
    daemon.music.mkdir(parents=True, exist_ok=True)
    link = daemon.music / "link"
    if not link.exists():
        link.symlink_to("/etc")
    reply = request(daemon, {"v": 1, "cmd": "save", "args": {"path": path}})
    assert reply["ok"] is False and reply["error"]["code"] == "bad_argument", reply
    r = daemon.ctl("save", path)
    assert r.returncode == 1 and ("inside the music dir" in r.stderr or ".wav or .flac" in r.stderr)
    for p in (Path("/etc/x"), Path("/etc/x.wav"), Path("/etc/infiniloop-x.wav")):
        assert not p.exists()


def test_nothing_reaches_a_shell(daemon, no_pwned):
    a, b = no_pwned
    nasty = [f"$(touch {a})", f"`touch {b}`", f"; touch {a}", f"| touch {b}", f"x && touch {a}"]
    for text in nasty:
        daemon.ok("prompt", text)
        for cmd, key in (("save", "path"), ("preset", "name"), ("model", "name")):
            request(daemon, {"v": 1, "cmd": cmd, "args": {key: text}})
    r = daemon.ctl("save", f"$(touch {a}).wav")  # a legal file name inside the music dir
    assert r.returncode == 0, r.stderr
    time.sleep(8)  # a generation with the last prompt has run (synth: in process)
    for p in no_pwned:
        assert not p.exists(), f"{p} was created"
    assert daemon.ok("ping").strip() == "pong"
