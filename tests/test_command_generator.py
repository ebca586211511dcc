"""The `command` backend: template expansion without a shell, and its error mapping."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

from infiniloopd.config import GeneratorConfig
from infiniloopd.generators import GeneratorError
from infiniloopd.generators.command import CommandGenerator, expand

# A tiny generator program: records its argv, then writes a tone of the asked length.
PROGRAM = """
import json, sys, numpy as np, soundfile as sf
prompt, seconds, output, seed, log = sys.argv[1:6]
open(log, "w").write(json.dumps(sys.argv[1:]))
mode = prompt.split()[0]
if mode == "fail":
    print("my-gen: out of memory", file=sys.stderr)
    sys.exit(3)
if mode == "nothing":
    sys.exit(0)
if mode == "hang":
    import time
    time.sleep(600)
n = int(float(seconds) * 22050)
t = np.arange(n) / 22050
sf.write(output, (0.3 * np.sin(2 * np.pi * 330 * t)).astype("float32"), 22050)
"""


def make(tmp_path: Path, **kw) -> tuple[CommandGenerator, Path]:
    log = tmp_path / "argv.json"
    template = [sys.executable, "-c", PROGRAM, "{prompt}", "{seconds}", "{output}", "{seed}"]
    cfg = GeneratorConfig(backend="command", command=[*template, str(log)], **kw)
    return CommandGenerator(cfg), log


def run(g: CommandGenerator, prompt: str, out: Path, seconds: float = 2.0) -> Path:
    return asyncio.run(g.generate(prompt, seconds, out, lambda f: None, seed=42))


def test_expand_substitutes_every_placeholder_inside_arguments():
    values = {"prompt": "p", "seconds": "7", "output": "/o.wav", "seed": "9", "model": "m"}
    got = expand(
        ["gen", "--len={seconds}s", "{prompt}", "{output}", "{seed}{model}", "{x}"], values
    )
    assert got == ["gen", "--len=7s", "p", "/o.wav", "9m", "{x}"]


def test_runs_without_a_shell(tmp_path):
    g, log = make(tmp_path)
    evil = "ok; touch pwned $(touch pwned2) `touch pwned3` > x"
    out = run(g, evil, tmp_path / "clip.wav")
    argv = json.loads(log.read_text())
    assert argv[0] == evil
    assert argv[1:4] == ["2", str(tmp_path / "clip.wav"), "42"]
    assert not list(Path.cwd().glob("pwned*"))
    assert sf.info(str(out)).duration == pytest.approx(2.0)
    assert (g.name, g.model) == ("command", Path(sys.executable).name)


def test_non_zero_exit_names_the_program_and_its_message(tmp_path):
    g, _ = make(tmp_path)
    with pytest.raises(GeneratorError, match=r"failed \(exit 3\): my-gen: out of memory"):
        run(g, "fail now", tmp_path / "clip.wav")


def test_missing_output_is_an_error(tmp_path):
    g, _ = make(tmp_path)
    with pytest.raises(GeneratorError, match="wrote no file at"):
        run(g, "nothing here", tmp_path / "clip.wav")


def test_timeout_kills_it(tmp_path):
    g, _ = make(tmp_path, timeout=1.0)
    with pytest.raises(GeneratorError, match="no result after 1 s"):
        run(g, "hang on", tmp_path / "clip.wav")


def test_template_without_output_is_refused():
    with pytest.raises(GeneratorError, match="must contain {output}"):
        CommandGenerator(GeneratorConfig(backend="command", command=["gen", "{prompt}"]))


def test_missing_program(tmp_path):
    cfg = GeneratorConfig(backend="command", command=[str(tmp_path / "nope"), "{output}"])
    with pytest.raises(GeneratorError, match="no such file"):
        run(CommandGenerator(cfg), "x", tmp_path / "clip.wav")
