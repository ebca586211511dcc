"""`infiniloopd record` with the real synth, checked from the audio it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from infiniloopd.player.stretch import stretch_loop

RATE = 48000
MINUTES = 0.75
TOL = round(0.025 * RATE)  # 25 ms
pytestmark = pytest.mark.slow


def _record(tmp: Path, variation: str, prompt: str, seconds: int) -> tuple[np.ndarray, dict, Path]:
    cfg = tmp / "config.yaml"
    cfg.write_text(
        f"generator:\n  backend: synth\n  seconds: {seconds}\n"
        f"playback:\n  min_play: 8\n  crossfade: 2\n  variation: {variation}\n"
        f"output:\n  rate: {RATE}\n  channels: 2\n"
    )
    env = {**os.environ}
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env[name] = str(tmp / name.lower())
    out, timeline, lib = tmp / "rec.flac", tmp / "rec.json", tmp / "lib"
    argv = [sys.executable, "-m", "infiniloopd", "record", str(out), "--minutes", str(MINUTES)]
    argv += ["--prompt", prompt, "--seed", "7"]
    argv += ["--timeline", str(timeline), "--library", str(lib), "--config", str(cfg)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The record runs the daemon's session, but never as the user's daemon: no state.
    assert not list((tmp / "xdg_state_home").rglob("state.json"))
    audio, sr = sf.read(out, dtype="float32", always_2d=True)
    assert sr == RATE
    return audio, json.loads(timeline.read_text()), lib


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> tuple[np.ndarray, dict, Path]:
    """Plain looping: which loop plays when is known from the timeline alone."""
    return _record(tmp_path_factory.mktemp("record"), "loop", "funk groove with drums and bass", 10)


@pytest.fixture(scope="module")
def branch(tmp_path_factory) -> tuple[np.ndarray, dict, Path]:
    """The default, playback.variation: branch."""
    tmp = tmp_path_factory.mktemp("branch")
    return _record(tmp, "branch", "lofi hip hop beat, relaxed piano", 20)


def test_length_is_the_minutes_asked(record):
    audio, timeline, _ = record
    assert audio.shape == (round(MINUTES * 60 * RATE), 2)
    assert timeline["frames"] == audio.shape[0] and timeline["rate"] == RATE


def test_timeline_is_valid_and_sorted(record):
    _, timeline, _ = record
    events = timeline["events"]
    ats = [e["at"] for e in events]
    assert ats == sorted(ats) and all(isinstance(a, int) and a >= 0 for a in ats)
    assert {e["type"] for e in events} <= {"loop", "transition_start", "transition_end", "jump"}
    assert events[0]["type"] == "loop" and events[0]["at"] == 0
    starts = [e for e in events if e["type"] == "transition_start"]
    ends = [e for e in events if e["type"] == "transition_end"]
    assert len(starts) >= 2, "min_play 8 s in 45 s: expected several transitions"
    for s in starts:
        end = next(e for e in ends if e["id"] == s["id"] and e["at"] > s["at"])
        assert end["at"] - s["at"] == s["fade"]
        loop = next(e for e in events if e["type"] == "loop" and e["id"] == s["id"])
        assert loop["at"] == s["at"] and isinstance(loop["grid"], dict)


def test_no_silence(record):
    audio, _, _ = record
    win = RATE // 20
    body = audio[: audio.shape[0] - RATE // 2, 0]  # the last 0.5 s fades out
    rms = np.sqrt(np.mean(body[: body.size // win * win].reshape(-1, win) ** 2, axis=1))
    assert rms.min() > 1e-3, f"a silent 50 ms window at {np.argmin(rms) * 0.05:.2f} s"


def _clicks(audio: np.ndarray, timeline: dict, kinds: tuple[str, ...]) -> None:
    mono = audio[:, 0]
    for e in timeline["events"]:
        if e["type"] not in kinds or e["at"] < RATE or e["at"] + RATE > mono.size:
            continue
        at = e["at"]
        around = np.abs(np.diff(mono[at - RATE : at + RATE]))
        near = np.abs(np.diff(mono[at - 3 : at + 3]))
        # A click is a step at the switch far above the music's own sample-to-sample
        # motion (seam_eval's click score: <= 1.5).
        assert near.max() <= 1.5 * np.percentile(around, 99.9) + 1e-4, f"{e['type']} click at {at}"


def test_no_clicks_at_transitions(record):
    _clicks(*record[:2], ("transition_start", "transition_end"))


def test_branch_jumps_between_the_prompts_loops_without_clicks(branch):
    audio, timeline, _ = branch
    events = timeline["events"]
    jumps = [e for e in events if e["type"] == "jump"]
    loops = {e["id"] for e in events if e["type"] == "loop"}
    assert jumps, "45 s of branch variation without a jump"
    for j in jumps:
        assert j["from"]["loop"] in loops and j["to"]["loop"] in loops
        assert isinstance(j["to"]["beat"], int)
    _clicks(audio, timeline, ("jump", "transition_start", "transition_end"))


def test_branch_record_is_never_silent(branch):
    audio, _, _ = branch
    test_no_silence((audio, None, None))


def _loop_audio(lib: Path, loop: dict) -> np.ndarray:
    """The loop as it was played: from the library, stretched the same way if it was."""
    audio, _ = sf.read(lib / f"{loop['id']}.flac", dtype="float32", always_2d=True)
    if loop["frames"] != audio.shape[0]:
        audio = stretch_loop(audio, RATE, loop["frames"] / audio.shape[0])
    return audio


def _phase(rec: np.ndarray, start: int, loop: np.ndarray) -> int:
    """Which frame of `loop` plays at record sample `start` (found by correlation)."""
    seg = rec[start : start + RATE, 0]
    n = loop.shape[0]
    tiled = np.tile(loop[:, 0], 2 + seg.size // n)[: n + seg.size]
    corr = signal.correlate(tiled, seg, mode="valid", method="fft")
    return int(np.argmax(corr[:n]))


def _dist(a: int, b: int, n: int) -> int:
    d = (a - b) % n
    return min(d, n - d)


def test_incoming_downbeat_lands_on_the_outgoing_bar_line(record):
    audio, timeline, lib = record
    events = timeline["events"]
    loops = [e for e in events if e["type"] == "loop"]
    for s in [e for e in events if e["type"] == "transition_start"]:
        outgoing = [e for e in loops if e["id"] == s["from"] and e["at"] < s["at"]][-1]
        incoming = next(e for e in loops if e["id"] == s["id"] and e["at"] == s["at"])
        t = s["at"]
        # The outgoing loop alone, the second before the transition: where is it at t?
        out_audio = _loop_audio(lib, outgoing)
        p_out = (_phase(audio, t - RATE, out_audio) + RATE) % out_audio.shape[0]
        bar_lines = outgoing["grid"]["downbeats"] or [0]
        assert min(_dist(p_out, d, out_audio.shape[0]) for d in bar_lines) <= TOL, (
            f"transition at {t}: not on a bar line of the outgoing loop (frame {p_out})"
        )
        # The incoming loop alone, after the fade: where was it at t?
        end = t + s["fade"]
        in_audio = _loop_audio(lib, incoming)
        n = in_audio.shape[0]
        p_in = (_phase(audio, end, in_audio) - s["fade"]) % n
        downbeat = (incoming["grid"]["downbeats"] or [0])[0]
        assert _dist(p_in, downbeat, n) <= TOL, (
            f"transition at {t}: the incoming loop entered at frame {p_in}, not its downbeat"
        )
