"""The MusicGPT backend against a stand-in binary with the real command-line contract."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.config import GeneratorConfig, parse_config
from infiniloopd.generators import GeneratorError, make_generator, validate_wav
from infiniloopd.generators.musicgpt import BINARY_NAMES, MusicGPTGenerator, find_binary
from tests.programs import python_program

FAKE_SCRIPT = Path(__file__).with_name("fake_musicgpt.py")


@pytest.fixture(scope="module", autouse=True)
def fake_binary(tmp_path_factory):
    """The stand-in as an executable that runs with the venv's interpreter."""
    global FAKE
    FAKE = python_program(tmp_path_factory.mktemp("bin") / "musicgpt", FAKE_SCRIPT)
    return FAKE


FAKE: Path = FAKE_SCRIPT  # replaced by the fixture before any test runs


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private data dir for the stand-in's models, a fast speed and a run log."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("FAKE_MUSICGPT_SPEED", "0.02")
    monkeypatch.setenv("FAKE_MUSICGPT_DOWNLOAD", "0.1")
    monkeypatch.delenv("FAKE_MUSICGPT_FAIL", raising=False)
    log = tmp_path / "runs.jsonl"
    monkeypatch.setenv("FAKE_MUSICGPT_LOG", str(log))
    return log


def runs(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def gen(**kw) -> MusicGPTGenerator:
    kw.setdefault("binary", FAKE)
    return MusicGPTGenerator(GeneratorConfig(backend="musicgpt", **kw))


def generate(g, prompt="lofi beat", seconds=5.0, out=None, tmp=None, progress=None):
    out = out or (tmp / "clip.wav")
    return asyncio.run(g.generate(prompt, seconds, out, progress or (lambda f: None), seed=7))


def test_command_line_is_the_documented_one(env, tmp_path):
    path = generate(gen(model="medium", gpu=True, force_download=True), tmp=tmp_path)
    argv = runs(env)[-1]["argv"]
    assert argv == [
        "lofi beat",
        "--model",
        "medium",
        "--secs",
        "5",
        "--output",
        str(tmp_path / "clip.wav"),
        "--no-playback",
        "--no-interactive",
        "--gpu",
        "--force-download",
    ]
    assert path == tmp_path / "clip.wav"
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (32000, 1, "FLOAT")
    assert info.duration == pytest.approx(5.0)


def test_prompt_that_looks_like_an_option_is_passed_after_double_dash(env, tmp_path):
    generate(gen(use_split_decoder=True), prompt="--dark techno", tmp=tmp_path)
    argv = runs(env)[-1]["argv"]
    assert argv[-2:] == ["--", "--dark techno"]
    assert "--use-split-decoder" in argv


def test_wav_suffix_is_appended_like_the_binary_does(env, tmp_path):
    path = generate(gen(), out=tmp_path / "noext")
    assert path == tmp_path / "noext.wav"
    assert path.exists()


def test_runs_at_low_priority(env, tmp_path):
    generate(gen(nice=12, idle_priority=True), tmp=tmp_path)
    rec = runs(env)[-1]
    assert rec["nice"] >= 12
    idle_ok = subprocess.run(["chrt", "--idle", "0", "true"], capture_output=True).returncode == 0
    if idle_ok:
        assert rec["sched"] == os.SCHED_IDLE


@pytest.mark.parametrize("seconds", [0.2, 31, 45])
def test_seconds_validated_before_the_binary_runs(env, tmp_path, seconds):
    with pytest.raises(GeneratorError, match="seconds must be between 1 and 30"):
        generate(gen(), seconds=seconds, tmp=tmp_path)
    assert runs(env) == []


def test_model_validated_before_the_binary_runs(env):
    with pytest.raises(GeneratorError, match="generator.model: expected one of small"):
        gen(model="huge")
    assert runs(env) == []


def test_stand_in_refuses_like_the_real_binary(env, tmp_path):
    bad_model = subprocess.run([FAKE, "x", "--model", "huge"], capture_output=True, text=True)
    assert bad_model.returncode == 2
    assert "invalid value 'huge' for '--model <MODEL>'" in bad_model.stderr
    bad_secs = subprocess.run([FAKE, "x", "--secs", "31"], capture_output=True, text=True)
    assert bad_secs.returncode == 1
    assert "ERROR --secs must <= 30" in bad_secs.stdout


def test_missing_binary_names_both_names(env, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GeneratorError) as err:
        find_binary(None)
    for name in BINARY_NAMES:
        assert repr(name) in str(err.value)
    assert "generator.binary" in str(err.value)


def test_binary_found_on_path_under_the_long_name(env, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / BINARY_NAMES[1]).symlink_to(FAKE)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    assert find_binary(None) == bindir / BINARY_NAMES[1]
    path = generate(MusicGPTGenerator(GeneratorConfig(backend="musicgpt")), tmp=tmp_path)
    assert path.exists()


def test_non_executable_binary(env, tmp_path):
    plain = tmp_path / "musicgpt"
    plain.write_text("not a program")
    with pytest.raises(GeneratorError, match="not an executable file"):
        generate(gen(binary=plain), tmp=tmp_path)
    with pytest.raises(GeneratorError, match="no such file"):
        generate(gen(binary=tmp_path / "nope"), tmp=tmp_path)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("crash", r"failed \(exit 101\): .*panicked"),
        ("garbage", "is not a readable audio file"),
        ("empty", "wrote an empty file"),
        ("silent", r"is silent \(peak -inf dBFS\)"),
        ("nan", "contains 100 NaN/infinite samples"),
        ("short", r"is 1.00 s long, expected about 5 s"),
    ],
)
def test_each_failure_mode_is_a_clear_one_line_error(env, tmp_path, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_MUSICGPT_FAIL", mode)
    with pytest.raises(GeneratorError, match=message) as err:
        generate(gen(), tmp=tmp_path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("musicgpt (small)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_timeout_kills_the_process(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MUSICGPT_FAIL", "hang")
    started = time.monotonic()
    with pytest.raises(GeneratorError, match=r"no result after 1.5 s \(generator.timeout\)"):
        generate(gen(timeout=1.5), tmp=tmp_path)
    assert time.monotonic() - started < 10
    assert not _alive(runs(env)[-1]["pid"])


def test_cancellation_kills_the_process(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MUSICGPT_FAIL", "hang")

    async def scenario() -> int:
        task = asyncio.create_task(
            gen().generate("x", 5, tmp_path / "c.wav", lambda f: None, seed=1)
        )
        for _ in range(200):
            await asyncio.sleep(0.05)
            if runs(env):
                break
        pid = runs(env)[-1]["pid"]
        assert _alive(pid)
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(scenario())
    assert not _alive(pid)


def test_progress_is_parsed_from_the_bars(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MUSICGPT_SPEED", "0.2")
    g = gen()
    seen: list[tuple[str, float]] = []
    generate(g, tmp=tmp_path, progress=lambda f: seen.append((g.phase, f)))
    gen_fracs = [f for phase, f in seen if phase == "generating"]
    assert len(gen_fracs) >= 10
    assert gen_fracs == sorted(gen_fracs)
    assert 0.0 <= gen_fracs[0] < 0.3 and gen_fracs[-1] > 0.9
    assert seen[-1][1] == 1.0
    assert g.phase == "idle"


def test_progress_is_estimated_when_no_bar_is_drawn(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MUSICGPT_FAIL", "noprogress")
    monkeypatch.setenv("FAKE_MUSICGPT_SPEED", "0.6")
    g = gen()
    g.speed = 0.6
    seen: list[tuple[str, float]] = []
    generate(g, tmp=tmp_path, progress=lambda f: seen.append((g.phase, f)))
    estimates = [f for phase, f in seen if phase == "generating"]
    assert estimates, seen
    assert all(0 < f <= 0.95 for f in estimates)
    assert estimates == sorted(estimates)


def test_first_run_reports_the_model_download(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MUSICGPT_DOWNLOAD", "1.5")

    async def watch(g) -> set[str]:
        phases: set[str] = set()
        task = asyncio.create_task(g.generate("x", 3, tmp_path / "c.wav", lambda f: None, seed=1))
        while not task.done():
            phases.add(g.phase)
            await asyncio.sleep(0.05)
        await task
        return phases

    g = gen()
    first = asyncio.run(watch(g))
    assert "downloading model" in first
    assert "generating" in first or "decoding" in first
    second = asyncio.run(watch(g))
    assert "downloading model" not in second


def test_make_generator_picks_the_backend(tmp_path):
    cfg = parse_config(
        {"generator": {"backend": "musicgpt", "model": "small-quant", "binary": str(FAKE)}}
    )
    g = make_generator(cfg.generator)
    assert (g.name, g.model) == ("musicgpt", "small-quant")
    cfg = parse_config({"generator": {"backend": "command", "command": ["gen", "{output}"]}})
    assert make_generator(cfg.generator).name == "command"


def test_validate_wav_accepts_a_good_clip(tmp_path):
    path = tmp_path / "ok.wav"
    t = np.arange(32000 * 4) / 32000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 32000)
    facts = validate_wav(path, 4.0, "test")
    assert (facts.rate, facts.channels) == (32000, 1)
    assert facts.seconds == pytest.approx(4.0)
    assert facts.peak == pytest.approx(0.3, abs=1e-3)


def test_stand_in_runs_with_the_test_interpreter(tmp_path):
    """Not whatever `python3` PATH finds: that one may lack the venv's packages."""
    assert os.access(FAKE, os.X_OK)
    bare = tmp_path / "python3"
    bare.write_text("#!/bin/sh\necho 'wrong interpreter' >&2\nexit 97\n")
    bare.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    r = subprocess.run([FAKE, "x", "--model", "huge"], capture_output=True, text=True, env=env)
    assert r.returncode == 2, r.stderr
