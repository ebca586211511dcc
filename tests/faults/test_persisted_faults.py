"""No persisted file can stop a start: the real daemon started on a poisoned home.

state.json that is not UTF-8, sidecars that are deep, huge, a FIFO or a directory, a
loop of another rate and channel count, crash leftovers in the music and state dirs.
The daemon starts, warns once per bad file, moves or skips what it cannot use, converts
the old loop and plays it at the right pitch; texts that may not enter are refused at
the socket and never persisted; SIGTERM during a `save` still answers the client.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import zmq

from infiniloopd.library import Library
from tests.faults.conftest import fault_config, request, start_daemon

pytestmark = pytest.mark.slow

PROMPT = "poisoned home"


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    root = tmp_path_factory.mktemp("poison")
    state_dir = root / "state" / "infiniloop"
    loops = root / "data" / "infiniloop" / "loops"
    music = root / "music" / "infiniloop"
    for d in (state_dir, loops, music):
        d.mkdir(parents=True)
    (state_dir / "state.json").write_bytes(b'{"prompt": "\xff\xfe", "volume": 50}')
    leftovers = [state_dir / ".state.json.abc123.tmp", music / ".mine.flac.x1y2z3.tmp"]
    for path in leftovers:
        path.write_bytes(b"half written")
    user_file = music / "keep.tmp"  # not ours: never touched
    user_file.write_bytes(b"user data")
    # An old loop: mono, 44.1 kHz (the output is 48 kHz stereo), a 440 Hz tone.
    rate = 44100
    tone = 0.4 * np.sin(2 * np.pi * 440 * np.arange(rate * 2) / rate)
    lib = Library(loops, 100)
    lib.scan()
    old = lib.add(tone[:, None].astype(np.float32), rate, {"prompt": PROMPT, "bpm": None})
    # Sidecars that must each be skipped with one warning.
    (loops / "deep.json").write_text('{"id": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (loops / "huge.json").write_text('{"id": "' + "x" * 6_000_000 + '"}')
    os.mkfifo(loops / "fifo.json")
    (loops / "dir.json").mkdir()
    cfg = fault_config(root / "out.wav", playback={"min_play": 3600})
    cfg["prompt"] = PROMPT
    d = start_daemon(root, cfg)
    try:
        yield d, old, leftovers, user_file
    finally:
        d.stop()
        d.close()


def test_the_daemon_starts_and_plays_the_old_loop_at_the_right_pitch(poisoned):
    d, old, _leftovers, _user = poisoned
    st = d.status()
    assert st["loop"]["id"] == old.id, st["loop"]
    time.sleep(1.5)
    x = d.samples()[-48000:]
    assert np.allclose(x[:, 0], x[:, 1], atol=2e-4)  # mono mapped to both channels
    spectrum = np.abs(np.fft.rfft(x[:, 0] * np.hanning(len(x))))
    peak = np.argmax(spectrum) * 48000 / len(x)
    assert abs(peak - 440) < 3, f"played at {peak:.1f} Hz instead of 440 (wrong speed)"


def test_each_bad_file_is_one_warning_and_nothing_is_a_traceback(poisoned):
    d, *_ = poisoned
    log = d.log()
    assert "Traceback" not in log
    lines = log.splitlines()
    for name in ("deep.json", "huge.json", "fifo.json", "dir.json"):
        hits = [line for line in lines if "skipping" in line and name in line]
        assert len(hits) == 1, (name, hits)
    moved = [line for line in lines if "corrupt state file" in line]
    assert len(moved) == 1 and "not UTF-8" in moved[0], moved
    state_dir = d.root / "state" / "infiniloop"
    assert list(state_dir.glob("state.json.corrupt-*"))


def test_crash_leftovers_are_swept_and_user_files_kept(poisoned):
    _d, _old, leftovers, user_file = poisoned
    assert not any(p.exists() for p in leftovers)
    assert user_file.read_bytes() == b"user data"


@pytest.mark.parametrize("text", ["calm \ud800 pads", "\udcff", "bell\x07", "a\x1b[2Jb"])
def test_text_that_may_not_enter_is_refused_and_never_persisted(poisoned, text):
    d, *_ = poisoned
    reply = request(d, {"v": 1, "cmd": "prompt", "args": {"text": text}})
    assert not reply["ok"] and reply["error"]["code"] == "bad_argument", reply
    assert "\n" not in reply["error"]["message"]
    st = d.status()
    assert st["prompt"] == PROMPT
    state = d.root / "state" / "infiniloop" / "state.json"
    if state.exists():
        raw = state.read_bytes()
        raw.decode("utf-8")
        assert b"\\ud" not in raw.lower() and b"\\u0007" not in raw


def test_sigterm_during_a_save_still_answers(poisoned):
    d, *_ = poisoned
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"ipc://{d.runtime}/control.sock")
    try:
        s.send_json({"v": 1, "cmd": "save", "args": {"path": "at-exit.wav"}})
        time.sleep(0.01)  # the save has started writing
        d.signal(15)
        assert s.poll(10000), "the client got no answer to its save"
        reply = json.loads(s.recv())
    finally:
        s.close()
    d.proc.wait(20)
    wav = d.music / "at-exit.wav"
    if reply["ok"]:
        assert wav.exists() and wav.with_suffix(".json").exists()
    else:
        assert "stopped" in reply["error"]["message"], reply
        assert not wav.exists()
    # Nothing half-written either way.
    assert not list(d.music.glob(".*.tmp"))
