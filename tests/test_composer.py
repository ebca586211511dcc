"""The composer (issue 13): prompts that matter, pieces that develop, a clean sound."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import yaml
from scipy import signal

import infiniloopd
from infiniloopd.generators.synth import DEFAULT_SOUNDFONTS, SR, SynthGenerator
from infiniloopd.generators.synth import composer as c
from infiniloopd.generators.synth.facts import music_path, read_music
from infiniloopd.generators.synth.generator import write_music
from infiniloopd.generators.synth.prompt import parse
from infiniloopd.library import LoopEntry

HAVE_SOUNDFONT = any(p.is_file() for p in DEFAULT_SOUNDFONTS)
PRESETS = yaml.safe_load((Path(infiniloopd.__file__).parent / "data" / "presets.yaml").read_text())


def programs(score: c.Score) -> set[int]:
    return {p.program for p in score.parts if p.bank != 128}


def has_drums(score: c.Score) -> bool:
    return any(p.channel == c.DRUM_CHANNEL for p in score.parts)


def true_peak_db(y: np.ndarray) -> float:
    up = signal.resample_poly(y.astype(np.float64), 4, 1)
    return float(20 * np.log10(np.max(np.abs(up))))


# --- 1. style choice ------------------------------------------------------------------------


def test_at_least_24_styles_each_reachable_by_its_own_name() -> None:
    assert len(c.STYLES) >= 24
    for name in ("rock", "metal", "bossa", "reggae", "funk", "house", "dnb", "classical"):
        assert name in c.STYLES
    for name in ("folk", "blues", "meditation", "lullaby"):
        assert name in c.STYLES
    for name in c.STYLES:
        assert c.choose_style(f"some {name} please").name == name, name


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_reaches_the_style_written_for_it(name: str) -> None:
    preset = PRESETS[name]
    prompt = preset["prompt"] if isinstance(preset, dict) else preset
    assert name in c.STYLES
    assert c.choose_style(prompt).name == name, prompt


@pytest.mark.parametrize(
    ("prompt", "style"),
    [
        ("heavy metal", "metal"),
        ("bossa nova", "bossa"),
        ("Bossa-Nova by the sea", "bossa"),
        ("reggae", "reggae"),
        ("country road trip", "folk"),
        ("punk rock", "rock"),
        ("dubstep", "dnb"),
        ("drum and bass", "dnb"),
        ("drum & bass", "dnb"),
        ("drum n bass", "dnb"),
        ("disco night", "funk"),
        ("deep house", "house"),
        ("lo-fi hip-hop", "lofi"),
        ("8-bit retro game", "chiptune"),
        ("music box lullaby", "lullaby"),
        ("meditation drone", "meditation"),
        ("string quartet", "classical"),
        ("delta blues", "blues"),
        ("solo pianos", "piano"),
        ("two acoustic guitars", "folk"),
        ("synths", "synthwave"),
    ],
)
def test_style_words_with_plurals_and_spellings(prompt: str, style: str) -> None:
    assert c.choose_style(prompt).name == style


@pytest.mark.parametrize(
    ("prompt", "style"),
    [
        ("coffee shop", "bossa"),
        ("christmas morning by the fire", "morning"),
        ("christmas", "lullaby"),
        ("gym workout", "house"),
        ("halloween party", "house"),
        ("spa day", "meditation"),
        ("cyberpunk city", "synthwave"),
        ("medieval tavern", "folk"),
        ("christmas jazz", "jazz"),
    ],
)
def test_scenes_and_occasions_find_a_style_before_any_hash(prompt: str, style: str) -> None:
    assert parse(prompt).style.name == style
    assert parse(prompt).matched not in ("hash", "mood")


def test_words_match_whole_never_inside_longer_words() -> None:
    # "nest" once picked chiptune (nes), "housework" techno (house), "rocket" would be rock.
    assert c.choose_style("a bird in its nest").name != "chiptune"
    assert c.choose_style("housework").name != "house"
    assert c.choose_style("rocket launch").name != "rock"
    assert c.choose_style("metallic sheen").name != "metal"
    assert c.choose_style("a popular spaceship").name != "ambient"  # not "space"


def test_unknown_prompt_takes_the_nearest_mood_then_a_stable_hash() -> None:
    assert parse("a sad and lonely walk").matched == "mood"
    assert parse("a sad and lonely walk").style.mood[0] < 0  # a dark style
    assert parse("joyful and upbeat party").style.mood[0] > 0.4
    assert parse("joyful and upbeat party").style.mood[1] > 0.4
    unknown = parse("blue whales past a lighthouse")
    assert unknown.matched == "hash" and unknown.style.name in c.DEFAULT_STYLES
    assert parse("blue whales past a lighthouse").style == unknown.style


# --- 2. the prompt's words ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "bpm"),
    [
        ("dark techno, 128 bpm", 128),
        ("dark techno, 140 bpm", 140),
        ("calm piano at 60 bpm", 60),
        ("jazz at 96 BPM", 96),
        ("ambient, 60 beats per minute", 60),
        ("drum and bass 174bpm", 174),
        ("lofi 72.5 bpm", 72.5),
    ],
)
def test_explicit_tempo_is_used_exactly_in_every_clip(prompt: str, bpm: float) -> None:
    for clip in range(4):
        assert c.compose(prompt, 10, seed=clip, clip=clip).bpm == bpm


@pytest.mark.parametrize(
    "prompt", ["dark techno, 128 bpm", "rock at 100 bpm", "synthwave at 104 bpm"]
)
def test_explicit_tempo_is_heard_within_3_percent(fluid: SynthGenerator, prompt: str) -> None:
    score = fluid.compose(prompt, 16, seed=3, clip=0)
    y = fluid.render(prompt, 16, seed=3, clip=0)
    tempo, _ = librosa.beat.beat_track(y=y, sr=SR)
    heard = float(np.atleast_1d(tempo)[0])
    assert abs(heard - score.bpm) / score.bpm < 0.03, (heard, score.bpm)


@pytest.mark.parametrize(
    ("prompt", "wanted"),
    [
        ("ambient with soft piano", {0}),
        ("jazz with flute and harp", {73, 46}),
        ("techno with strings", {48}),
        ("lofi beat with saxophone", {66}),
        ("cinematic choir and organ", {52, 19}),
        ("morning bells and guitar", {14, 25}),
        ("chill synth and slap bass", {81, 36}),
        ("folk with violin", {40}),
        ("reggae with trumpet", {56}),
        ("ambient cello", {42}),
    ],
)
def test_named_instruments_play(prompt: str, wanted: set[int]) -> None:
    for clip in range(8):  # in every section, not just the first
        score = c.compose(prompt, 12, seed=clip, clip=clip)
        assert wanted <= programs(score), (clip, score.section, programs(score))
        for p in wanted:
            part = next(i for i, x in enumerate(score.parts) if x.program == p)
            assert sum(n.part == part for n in score.notes) >= 3


def test_negations_and_only() -> None:
    for clip in range(8):
        assert not has_drums(c.compose("jazz without drums", 10, clip, clip))
        assert not has_drums(c.compose("techno, no drums", 10, clip, clip))
        assert not has_drums(c.compose("ambient, no drums", 10, clip, clip))
        lofi = c.compose("lofi beats without piano", 10, clip, clip)
        assert not programs(lofi) & set(range(8)) and len(programs(lofi)) >= 2
        assert not any(p.name == "bass" for p in c.compose("house, no bass", 10, clip, clip).parts)
        only = c.compose("piano only", 10, clip, clip)
        assert programs(only) == {0} and not has_drums(only)
        solo = c.compose("solo guitar", 10, clip, clip)
        assert programs(solo) <= set(range(24, 32)) and programs(solo)
        assert not has_drums(solo)
    # The refused word does not choose the style either.
    assert c.choose_style("relaxing music, no piano").name != "piano"


def test_mood_words_move_mode_tempo_register_and_density() -> None:
    base = "pop song for the afternoon"
    assert c.compose("sad piano", 8, 1, 0).mode in c.MINOR_LIKE
    assert c.compose("happy sunny piano", 8, 1, 0).mode not in c.MINOR_LIKE
    assert c.compose(f"slow {base}", 8, 1, 0).bpm < c.compose(base, 8, 1, 0).bpm
    assert c.compose(f"upbeat {base}", 8, 1, 0).bpm > c.compose(base, 8, 1, 0).bpm
    assert c.compose("fast energetic techno", 8, 1, 0).bpm <= 130  # techno keeps its tempo

    def mean(prompt: str, what: str) -> float:
        notes = [n for k in range(4) for n in c.compose(prompt, 12, k, k).notes]
        return float(np.mean([getattr(n, what) for n in notes]))

    assert mean("soft jazz", "velocity") < mean("jazz", "velocity") - 8
    assert mean("dark folk", "pitch") < mean("bright folk", "pitch") - 3

    def count(prompt: str) -> int:
        return sum(len(c.compose(prompt, 12, k, k).notes) for k in range(4))

    assert count("sparse lofi") < 0.85 * count("lofi")
    dreamy = c.compose("dreamy lofi", 8, 1, 0).fx
    assert dreamy.reverb_mix > c.compose("lofi", 8, 1, 0).fx.reverb_mix


# --- 3. pieces that develop --------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["synthwave drive", "calm ambient pads", "evening jazz"])
def test_clips_of_one_prompt_are_sections_of_one_piece(prompt: str) -> None:
    scores = [c.compose(prompt, 20, seed=1000 + k, clip=k) for k in range(12)]
    assert len({s.bpm for s in scores}) == 1  # one tempo
    assert len({s.music["home_key"] for s in scores}) == 1  # one home key
    assert len({s.section for s in scores}) >= 3  # A, B, a bridge or C
    assert len({s.key_name for s in scores}) >= 2  # modulation to related keys
    layers = {tuple(sorted(p.name for p in s.parts)) for s in scores}
    assert len(layers) >= 2  # layers enter and leave
    # A section sounds like itself when it returns: the same progression.
    a = [s for s in scores if s.section == "A"]
    assert len(a) >= 2 and len({frozenset(s.chords) for s in a}) == 1
    # Related keys only: the same, relative, dominant, subdominant or a step up.
    home = scores[0].tonic if scores[0].section == "A" else None
    if home is not None:
        assert all((s.tonic - home) % 12 in (0, 2, 3, 5, 7, 9) for s in scores)


def test_density_rises_and_falls_over_minutes() -> None:
    counts = [len(c.compose("lofi", 20, seed=k, clip=k).notes) for k in range(16)]
    assert max(counts) > 1.2 * min(counts)


@pytest.mark.parametrize("name", sorted(c.STYLES))
def test_four_bars_hold_at_least_three_chord_changes(name: str) -> None:
    for clip in range(6):
        score = c.compose(f"{name} music", 30, seed=clip, clip=clip)
        bar = 4 * 60 / score.bpm
        times, chords = score.chord_times, score.chords
        assert len(times) == len(chords)
        for i in range(len(times)):
            if times[i] < 0 or times[i] + 4 * bar > 30:
                continue
            inside = [j for j in range(i + 1, len(times)) if times[j] < times[i] + 4 * bar - 1e-6]
            changes = sum(set(chords[j]) != set(chords[j - 1]) for j in inside)
            assert changes >= 3, (name, clip, [chords[k] for k in [i, *inside]])


def test_ambient_layers_phase_and_never_repeat_a_clip() -> None:
    prompt = "ambient, no drums"
    patterns = []
    for k in range(10):
        score = c.compose(prompt, 20, seed=k, clip=k)
        lead = next(i for i, p in enumerate(score.parts) if p.name == "lead")
        patterns.append(tuple((round(n.start, 1), n.pitch) for n in score.notes if n.part == lead))
    assert all(len(p) >= 4 for p in patterns)
    assert len(set(patterns)) == len(patterns)
    # Several layers of unequal period: onset gaps of one pitch are not one number.
    onsets: dict[int, list[float]] = {}
    for k in range(3):
        score = c.compose(prompt, 20, seed=k, clip=k)
        lead = next(i for i, p in enumerate(score.parts) if p.name == "lead")
        for n in score.notes:
            if n.part == lead and n.start >= 0:
                onsets.setdefault(n.pitch, []).append(k * 20 + n.start)
    gaps = {round(g, 1) for v in onsets.values() for g in np.diff(sorted(v)) if g > 1}
    assert len(gaps) >= 3


def test_music_facts_for_the_sidecar(tmp_path: Path) -> None:
    score = c.compose("jazz with flute, 100 bpm", 10, seed=1, clip=2)
    facts = score.music
    assert facts["style"] == "jazz" and facts["tempo"] == 100
    assert facts["key"] == score.key_name and facts["section"] == score.section
    assert "flute" in facts["instruments"] and facts["drums"] is True
    clip = tmp_path / "clip.wav"
    write_music(clip, score)
    assert music_path(clip).name == "clip.wav.music.json"
    assert read_music(clip) == json.loads(json.dumps(facts))
    assert read_music(tmp_path / "other.wav") is None
    sidecar = {
        "id": "x",
        "prompt": "p",
        "generator": "synth",
        "model": "m",
        "seconds": 1.0,
        "bpm": None,
        "start": 0,
        "end": 10,
        "rate": 48000,
        "channels": 2,
        "loudness_lufs": None,
        "created": 1.0,
        "last_played": None,
        "score": None,
        "source_seconds": 2.0,
    }
    assert LoopEntry.from_json(sidecar, tmp_path / "x.flac").music is None  # old sidecars
    entry = LoopEntry.from_json({**sidecar, "music": facts}, tmp_path / "x.flac")
    assert entry.music == facts and entry.to_json()["music"] == facts


# --- 4. sound --------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["jazz", "techno", "heavy metal", "lofi", "house", "rock"])
def test_true_peak_stays_under_minus_one_dbtp(fluid: SynthGenerator, prompt: str) -> None:
    for k in range(2):
        y = fluid.render(prompt, 10, seed=k, clip=k)
        assert true_peak_db(y) <= -1.0, (prompt, k)


def test_ride_and_hats_are_not_harsh(fluid: SynthGenerator) -> None:
    def top_share(prompt: str) -> float:
        y = fluid.render(prompt, 10, seed=2, clip=1)
        spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(y.size, 1 / SR)
        return float(spec[freqs > 6000].sum() / spec.sum())

    # Issue 13 measured the jazz ride at twice any other style's top end (9.8% above
    # 6 kHz on main); cymbals now sit under the kit like the others' hats.
    jazz, techno = top_share("smooth jazz combo, ride cymbal"), top_share("techno")
    assert jazz < 0.05 and techno < 0.05, (jazz, techno)


def test_the_clip_starts_with_its_reverb_already_sounding(fluid: SynthGenerator) -> None:
    # Pre-roll: the first second is as full as the rest, not a dry start building a room.
    y = fluid.render("calm ambient pads", 12, seed=1, clip=0)
    first = np.sqrt(np.mean(y[int(0.1 * SR) : SR] ** 2))
    later = np.sqrt(np.mean(y[4 * SR : 8 * SR] ** 2))
    assert first > 0.35 * later
