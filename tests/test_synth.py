"""The built-in synth generator: composer, FluidSynth and numpy renderers, finished WAVs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from infiniloopd.errors import UserError
from infiniloopd.generators.synth import DEFAULT_SOUNDFONTS, SR, SynthGenerator, fx
from infiniloopd.generators.synth import composer as c
from tests.test_presets import REQUIRED

HAVE_SOUNDFONT = any(p.is_file() for p in DEFAULT_SOUNDFONTS)
# The mood presets issue 7 requires; each must map to a style of its own.
MOODS = tuple(REQUIRED)


@pytest.fixture(scope="module")
def plain() -> SynthGenerator:
    return SynthGenerator(search=())


@pytest.fixture(params=["fluid", "numpy"])
def gen(request: pytest.FixtureRequest) -> SynthGenerator:
    return request.getfixturevalue("fluid" if request.param == "fluid" else "plain")


def tempo_of(y: np.ndarray) -> float:
    tempo, _ = librosa.beat.beat_track(y=y, sr=SR)
    return float(np.atleast_1d(tempo)[0])


def chroma_of(y: np.ndarray) -> np.ndarray:
    harmonic = librosa.effects.harmonic(y)  # drums smear chroma; listen to the notes
    return librosa.feature.chroma_cqt(y=harmonic, sr=SR).mean(axis=1)


# --- the file it writes -----------------------------------------------------------------


def test_generate_writes_a_musicgen_like_wav_and_reports_progress(tmp_path: Path) -> None:
    gen = SynthGenerator() if HAVE_SOUNDFONT else SynthGenerator(search=())
    out = tmp_path / "clip.wav"
    seen: list[float] = []

    async def run() -> Path:
        ticks = 0

        async def ticker() -> None:  # proves the event loop keeps running meanwhile
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        result = await gen.generate("lofi beats", 7.5, out, seen.append, seed=3)
        task.cancel()
        assert ticks > 3
        return result

    assert asyncio.run(run()) == out
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (32000, 1, 240000)
    assert info.format == "WAV"
    assert len(seen) >= 3 and seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)
    # No temp file left behind; the clip's musical facts beside it (for the sidecar).
    assert sorted(os.listdir(tmp_path)) == ["clip.wav", "clip.wav.music.json"]
    music = json.loads((tmp_path / "clip.wav.music.json").read_text())
    assert music["style"] == "lofi" and music["section"] and music["tempo"] > 0
    y, _ = sf.read(out, dtype="float32")
    assert np.array_equal(y, gen.render("lofi beats", 7.5, seed=3, clip=0))  # first clip


@pytest.mark.parametrize("seconds", [1.0, 8.0, 10.03125])
def test_length_is_exact(plain: SynthGenerator, seconds: float) -> None:
    assert len(plain.render("piano", seconds, seed=1)) == round(seconds * SR)


def test_bad_seconds_is_a_user_error(plain: SynthGenerator) -> None:
    with pytest.raises(UserError, match="generator.seconds"):
        plain.render("piano", 0, seed=1)


@pytest.mark.parametrize("prompt", ["techno", "ambient", "lofi hip hop", "cinematic", "night"])
def test_level_is_reasonable_and_never_clips(gen: SynthGenerator, prompt: str) -> None:
    y = gen.render(prompt, 10, seed=2)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert np.max(np.abs(y)) <= 0.9
    lufs = pyloudnorm.Meter(SR).integrated_loudness(y.astype(np.float64))
    assert -22 <= lufs <= -12, lufs


def test_edges_are_natural_not_a_loop(fluid: SynthGenerator) -> None:
    y = fluid.render("chill", 10, seed=4)
    ms = SR // 1000
    assert abs(y[0]) < 1e-3  # a fade-in, not a click
    assert np.sqrt(np.mean(y[: 5 * ms] ** 2)) < np.sqrt(np.mean(y[SR : 2 * SR] ** 2))
    # It stops where it stops: the tail is music, not silence, and not the beginning.
    assert np.sqrt(np.mean(y[-SR // 2 : -10 * ms] ** 2)) > 0.01
    assert not np.allclose(y[-SR // 2 :], y[: SR // 2], atol=1e-2)


# --- what the music is --------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["techno", "dark techno in a warehouse", "jazz", "lofi"])
def test_beat_tracker_finds_the_tempo_asked_for(gen: SynthGenerator, prompt: str) -> None:
    score = gen.compose(prompt, 12, seed=5)
    if "techno" in prompt:
        assert 125 <= score.bpm <= 130
    found = tempo_of(gen.render(prompt, 12, seed=5))
    assert abs(found - score.bpm) / score.bpm < 0.04, (found, score.bpm)


@pytest.mark.parametrize("prompt", ["piano", "ambient", "rain on the window", "night"])
def test_tonal_content_is_in_the_chosen_key(gen: SynthGenerator, prompt: str) -> None:
    score = gen.compose(prompt, 10, seed=6)
    chroma = chroma_of(gen.render(prompt, 10, seed=6))
    in_scale = sum(chroma[pc] for pc in score.scale) / chroma.sum()
    assert in_scale > 0.75, (score.key_name, in_scale)
    # The claimed key fits better than the key a tritone away (which shares two notes).
    far = frozenset((pc + 6) % 12 for pc in score.scale)
    assert in_scale > 1.5 * sum(chroma[pc] for pc in far) / chroma.sum()
    # The chords sound: the first chord's root is among the loudest pitch classes.
    loud = set(np.argsort(chroma)[::-1][:5])
    assert any(ch[0] in loud for ch in score.chords)


def test_different_prompts_give_different_music(fluid: SynthGenerator) -> None:
    def mel(prompt: str) -> np.ndarray:
        y = fluid.render(prompt, 8, seed=1)
        m = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_mels=48))
        return m.mean(axis=1)

    techno, piano, jazz = mel("techno"), mel("solo piano"), mel("jazz club")
    assert np.abs(techno - piano).mean() > 4
    assert np.abs(jazz - piano).mean() > 2
    a, b = fluid.render("morning", 8, seed=1), fluid.render("night", 8, seed=1)
    assert np.corrcoef(chroma_of(a), chroma_of(b))[0, 1] < 0.9


def test_same_seed_is_identical_other_seeds_differ_but_belong_together(
    fluid: SynthGenerator,
) -> None:
    a = fluid.render("synthwave drive", 6, seed=11)
    b = SynthGenerator().render("synthwave drive", 6, seed=11)  # a fresh instance too
    assert np.array_equal(a, b)
    assert np.array_equal(a, fluid.render("synthwave drive", 6, seed=11))
    other = fluid.render("synthwave drive", 6, seed=12)
    assert np.abs(other - a).mean() > 0.01
    # Clips of one prompt are sections of one piece: one tempo, one home key; the
    # sections move to related keys (issue 13), so only the A sections share the tonic.
    scores = [fluid.compose("synthwave drive", 6, seed=s) for s in range(8)]
    assert len({s.music["home_key"] for s in scores}) == 1
    assert len({s.tonic for s in scores if s.section == "A"}) == 1
    assert len({s.bpm for s in scores}) == 1
    assert len({tuple(n.pitch for n in s.notes) for s in scores}) == 8


# --- the composer ---------------------------------------------------------------------------


@pytest.mark.parametrize("mood", MOODS)
def test_every_mood_preset_has_its_style(mood: str) -> None:
    assert c.choose_style(mood).name == mood
    score = c.compose(f"{mood} music", 10, seed=1)
    assert score.style == mood
    assert len(score.notes) >= 20
    # Notes before 0 are the pre-roll that fills the reverb before the clip starts.
    assert 0 < score.preroll <= 6
    assert all(-score.preroll <= n.start < 10 for n in score.notes)
    assert all(n.duration > 0 and 0 <= n.pitch <= 127 for n in score.notes)
    assert all(1 <= n.velocity <= 127 for n in score.notes)
    drums = [p for p in score.parts if p.channel == c.DRUM_CHANNEL]
    assert (not drums) == (mood in ("ambient", "piano", "rain", "night"))
    assert all(p.bank == 128 for p in drums)


def test_keywords_and_modifiers() -> None:
    assert c.compose("rainy lofi beats", 4, 1).style == "lofi"
    assert c.compose("rainy lofi beats", 4, 1).fx.rain > 0
    assert c.compose("lofi", 4, 1).fx.rain == 0
    assert c.compose("epic orchestral trailer", 4, 1).style == "cinematic"
    assert c.compose("8-bit retro game", 4, 1).style == "chiptune"
    assert c.compose("sad piano", 4, 1).mode in c.MINOR_LIKE
    assert c.compose("happy sunny piano", 4, 1).mode not in c.MINOR_LIKE
    assert c.compose("fast energetic techno", 4, 1).bpm <= 130  # techno keeps its tempo


def test_unknown_prompt_maps_stably_across_processes(plain: SynthGenerator) -> None:
    prompt = "the slow migration of blue whales past a lighthouse"
    score = c.compose(prompt, 8, seed=3)
    assert score.style in c.DEFAULT_STYLES
    code = (
        "from infiniloopd.generators.synth import composer as c; "
        f"s = c.compose({prompt!r}, 8, 3); print(s.style, s.tonic, s.mode, s.bpm)"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        assert out == [score.style, str(score.tonic), score.mode, str(score.bpm)]
    y = plain.render(prompt, 8, seed=3)
    assert np.sqrt(np.mean(y**2)) > 0.05


def test_voice_leading_keeps_chords_close() -> None:
    score = c.compose("lofi", 30, seed=2)
    chords_part = next(i for i, p in enumerate(score.parts) if p.name == "chords")
    onsets: dict[float, list[int]] = {}
    for n in score.notes:
        if n.part == chords_part and n.velocity > 60:
            onsets.setdefault(round(n.start, 1), []).append(n.pitch)
    voicings = [sorted(v) for _, v in sorted(onsets.items()) if len(v) >= 3]
    moves = [
        np.mean(np.abs(np.subtract(a[:3], b[:3])))
        for a, b in zip(voicings[:-1], voicings[1:], strict=True)
    ]
    assert np.mean(moves) <= 3.0  # smooth, no leaps of the whole hand
    assert all(v[-1] - v[0] <= 19 for v in voicings)


def test_walking_bass_walks() -> None:
    score = c.compose("jazz", 20, seed=3)
    bass = next(i for i, p in enumerate(score.parts) if p.name == "bass")
    notes = [n for n in score.notes if n.part == bass]
    beat = 60 / score.bpm
    assert len(notes) >= int(20 / beat) - 2  # one note every beat
    steps = np.abs(np.diff([n.pitch for n in notes]))
    assert np.median(steps) <= 5 and steps.max() <= 14


# --- the fallback and the errors ----------------------------------------------------------------


def test_numpy_fallback_warns_once_and_plays(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        gen = SynthGenerator(search=(Path("/nonexistent/FluidR3_GM.sf2"),))
        assert gen.model == "numpy"
        a = gen.render("techno", 8, seed=1)
        gen.render("ambient", 4, seed=2)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "apt-get install fluid-soundfont-gm" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    assert abs(tempo_of(a) - c.compose("techno", 8, 1).bpm) < 5


def test_fluid_path_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    if not HAVE_SOUNDFONT:
        pytest.skip("no SoundFont installed")
    with caplog.at_level(logging.WARNING):
        gen = SynthGenerator()
        gen.render("piano", 2, seed=1)
    assert gen.model in {p.stem for p in DEFAULT_SOUNDFONTS}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_explicit_soundfont_missing_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sf2"
    with pytest.raises(UserError) as err:
        SynthGenerator(missing)
    assert str(err.value) == f"generator.soundfont: no such file: {missing}"


def test_explicit_soundfont_that_is_not_one_is_a_user_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.sf2"
    bogus.write_bytes(b"RIFF\0\0\0\0not a soundfont")
    gen = SynthGenerator(bogus)
    assert gen.model == "bogus"
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError):
        pytest.skip("libfluidsynth not installed")
    with pytest.raises(UserError, match="generator.soundfont: FluidSynth cannot load"):
        gen.render("piano", 1, seed=1)


def test_small_soundfont_renders_too() -> None:
    small = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
    if not small.is_file():
        pytest.skip("timgm6mb-soundfont not installed")
    gen = SynthGenerator(small)
    y = gen.render("synthwave", 6, seed=1)  # uses an 808 kit the small font lacks
    assert gen.model == "TimGM6mb"
    assert np.max(np.abs(y)) <= 0.9 and np.sqrt(np.mean(y**2)) > 0.05


# --- the finishing effects ----------------------------------------------------------------


def _band_energy(y: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


def test_reverb_adds_a_decaying_tail() -> None:
    x = np.zeros(SR * 3, dtype=np.float32)
    x[100] = 1.0
    y = fx.reverb(x, SR, mix=0.5, seconds=2.0, rng=np.random.default_rng(1))
    early = np.sqrt(np.mean(y[SR // 10 : SR // 2] ** 2))
    late = np.sqrt(np.mean(y[int(1.5 * SR) : 2 * SR] ** 2))
    assert early > 1e-3 and late < early / 5 and late > 0  # a tail that dies away
    assert len(y) == len(x)


def test_lofi_dulls_the_top_and_textures_are_broadband() -> None:
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(SR * 2).astype(np.float32) * 0.1
    dull = fx.lofi(noise, SR, cutoff=4000, wow_ms=1.5, drive=0.3, rng=rng)
    assert _band_energy(dull, 8000, 16000) < 0.02 * _band_energy(noise, 8000, 16000)
    assert _band_energy(dull, 200, 2000) > 0.3 * _band_energy(noise, 200, 2000)
    rain = fx.rain(SR * 2, SR, 1.0, rng)
    assert _band_energy(rain, 1000, 6000) > 5 * _band_energy(rain, 20, 200)
    crackle = fx.vinyl(SR * 2, SR, crackle=1.0, hiss=0.0, rng=rng)
    loud = np.abs(crackle) > 5 * np.sqrt(np.mean(crackle**2))
    assert 0 < loud.mean() < 0.01  # sparse clicks, not a steady noise


def test_limiter_holds_the_ceiling_smoothly() -> None:
    t = np.arange(SR) / SR
    x = (np.sin(2 * np.pi * 220 * t) * np.where(t > 0.5, 2.0, 0.5)).astype(np.float32)
    y = fx.limit(x, 0.89, SR)
    assert np.max(np.abs(y)) <= 0.89
    assert np.allclose(y[: SR // 4], x[: SR // 4])  # quiet part untouched
    assert np.max(np.abs(np.diff(y))) < 0.1  # no steps in the gain


def test_other_sample_rates(fluid: SynthGenerator) -> None:
    assert len(fluid.render("piano", 2.5, seed=1, sr=48000)) == 120000
