"""The daemon's synth backend: the composer in a child process, at low priority."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from infiniloopd.config import parse_config
from infiniloopd.errors import UserError
from infiniloopd.generators import make_generator
from infiniloopd.generators.base import GeneratorError
from infiniloopd.generators.synth.process import SynthProcessGenerator


def _cfg(**generator):
    return parse_config({"generator": generator}).generator


def test_daemon_side_stays_light():
    # Making the synth backend must not load scipy or FluidSynth into the daemon.
    code = (
        "import sys\n"
        "from infiniloopd.config import parse_config\n"
        "from infiniloopd.generators import make_generator\n"
        "g = make_generator(parse_config(None).generator)\n"
        "heavy = [m for m in ('scipy', 'fluidsynth', 'librosa') if m in sys.modules]\n"
        "print(g.name, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "synth []"


def test_generates_a_clip_in_a_child_with_progress(tmp_path: Path):
    gen = make_generator(_cfg())
    assert isinstance(gen, SynthProcessGenerator)
    seen: list[float] = []
    out = asyncio.run(gen.generate("techno", 5.0, tmp_path / "c.wav", seen.append, seed=7))
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 32000 and audio.ndim == 1 and len(audio) == 5 * 32000
    assert float(np.sqrt(np.mean(audio**2))) > 0.01 and np.max(np.abs(audio)) < 1.0
    assert seen[-1] == 1.0 and any(0 < f < 1 for f in seen)
    assert seen == sorted(seen)


def test_same_seed_same_clip_as_in_process(tmp_path: Path):
    from infiniloopd.generators.synth import SynthGenerator

    gen = make_generator(_cfg())
    out = asyncio.run(gen.generate("jazz", 5.0, tmp_path / "c.wav", lambda f: None, seed=11))
    child, _ = sf.read(out, dtype="float32")
    here = SynthGenerator(gen.soundfont, search=()).render("jazz", 5.0, 11, clip=0)
    np.testing.assert_allclose(child, here, atol=1e-6)


def test_missing_soundfont_is_a_config_error(tmp_path: Path):
    with pytest.raises(UserError, match="generator.soundfont: no such file"):
        make_generator(_cfg(soundfont=str(tmp_path / "none.sf2")))


def test_no_soundfont_falls_back_to_numpy_with_one_warning(tmp_path: Path, caplog):
    with caplog.at_level("WARNING"):
        gen = SynthProcessGenerator(_cfg(), search=(tmp_path / "none.sf2",))
        out = asyncio.run(gen.generate("piano", 5.0, tmp_path / "c.wav", lambda f: None, seed=1))
    assert gen.model == "numpy"
    assert sf.info(str(out)).frames == 5 * 32000
    warnings = [r for r in caplog.records if "fluid-soundfont-gm" in r.getMessage()]
    assert len(warnings) == 1


def test_cancel_kills_the_child(tmp_path: Path):
    gen = make_generator(_cfg())

    async def scenario() -> None:
        task = asyncio.create_task(
            gen.generate("cinematic", 30.0, tmp_path / "c.wav", lambda f: None, seed=2)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    time.sleep(0.2)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "c.wav") not in ps
    assert not (tmp_path / "c.wav").exists()


def test_child_failure_is_one_line(tmp_path: Path):
    gen = make_generator(_cfg())
    with pytest.raises(GeneratorError) as info:
        # An unwritable output directory makes the child fail.
        asyncio.run(gen.generate("x", 5.0, tmp_path / "no" / "c.wav", lambda f: None, seed=1))
    assert str(info.value).startswith("generator synth failed (exit 1):")
    assert "\n" not in str(info.value)


def test_clips_of_a_prompt_walk_through_its_piece_and_say_so(tmp_path: Path):
    import json

    gen = make_generator(_cfg())
    facts = []
    for k in range(3):
        out = tmp_path / f"c{k}.wav"
        asyncio.run(gen.generate("reggae, 80 bpm", 5.0, out, lambda f: None, seed=5))
        facts.append(json.loads((tmp_path / f"c{k}.wav.music.json").read_text()))
    # Same seed each time, yet the clips are consecutive sections of one piece.
    assert [f["clip"] for f in facts] == [0, 1, 2]
    assert len({f["section"] for f in facts}) >= 2
    assert {f["tempo"] for f in facts} == {80.0} and {f["style"] for f in facts} == {"reggae"}
    assert len({f["home_key"] for f in facts}) == 1
    other = tmp_path / "other.wav"
    asyncio.run(gen.generate("techno", 5.0, other, lambda f: None, seed=5))
    assert json.loads((tmp_path / "other.wav.music.json").read_text())["clip"] == 0
