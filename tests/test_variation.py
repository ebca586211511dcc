"""Variation (playback.variation: branch): the jump graph, and jumps checked in the audio."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from infiniloopd.player.mixer import Mixer
from infiniloopd.player.variation import (
    Brancher,
    PoolLoop,
    VariationParams,
    build_brancher,
    build_table,
)
from tests.variation_audio import (
    BAR,
    BEAT,
    RATE,
    exact_loop_minutes,
    jump_metrics,
    load_seam_eval,
    make_loop,
)

BLOCK = 1024


def make_pool(drums: float = 1.0) -> list[PoolLoop]:
    loops = [
        ("a", ["C", "Am", "F", "G"], 1),
        ("b", ["C", "Am", "Dm", "G"], 2),
        ("c", ["Em", "Am", "F", "G"], 3),
    ]
    out = []
    for key, chords, seed in loops:
        audio, grid = make_loop(chords, seed, drums)
        out.append(PoolLoop(key, audio, grid, 120.0))
    return out


@pytest.fixture(scope="module")
def pool() -> list[PoolLoop]:
    return make_pool()


@pytest.fixture(scope="module")
def table(pool):
    return build_table(pool, RATE)


def render(
    audio: np.ndarray, source: Brancher | None, seconds: float
) -> tuple[np.ndarray, list[dict]]:
    """Play `audio` on a fresh mixer at full volume (the deck from stream frame 0)."""
    m = Mixer(RATE, 2, BLOCK, volume=1.0)
    m.play("deck", audio, 0.0)
    m.gain = m.gain_target = 1.0  # no start ramp: the output is the deck's samples
    m.gain_step = 0.0
    if source is not None:
        m.decks[0].set_variation(source)
    blocks, jumps = [], []
    for _ in range(int(seconds * RATE) // BLOCK):
        blocks.append(m.render(BLOCK))
        jumps += [data for name, data in m.events if name == "jump"]
        m.events.clear()
    return np.concatenate(blocks), jumps


def test_graph_joins_same_bar_position_and_similar_beats(pool):
    # d's third bar is a chord no other bar has (F#, A#, C#): its inner beats must stay unjoined
    odd, grid = make_loop(["C", "Am", "F#", "G"], 4)
    table = build_table([*pool, PoolLoop("d", odd, {**grid, "bpm": 120.0}, 120.0)], RATE)
    assert table.edges > 20
    for li, per_beat in enumerate(table.jumps):
        src = table.loops[li]
        for bi, jumps in enumerate(per_beat):
            for j in jumps:
                dst = table.loops[j.loop]
                assert src.bar_pos[bi] == dst.bar_pos[j.beat], (li, bi, j)
                assert (j.loop, j.beat) != (li, bi)
    # the third bar's middle beats: their whole context (beats -2..+1) is the odd chord
    for beat in (2 * 4 + 2, 2 * 4 + 3):
        assert table.jumps[3][beat] == ()
        for per_beat in table.jumps:
            assert all((j.loop, j.beat) != (3, beat) for js in per_beat for j in js)
    # identical context (same chords, same drum pattern) joins: a's first bars to b's
    assert any(j.loop == 1 and j.beat == 1 for j in table.jumps[0][1])


def test_grid_without_beats_falls_back_on_bpm_then_on_none():
    audio, _ = make_loop(["C", "Am"], 1)
    lone = build_table([PoolLoop("x", audio, None, 120.0)], RATE)
    assert lone.loops[0].beats.tolist() == list(range(0, 2 * BAR, BEAT))
    assert lone.loops[0].beats_per_bar == 4
    beatless = build_table([PoolLoop("x", audio, {"beats": [], "downbeats": []}, None)], RATE)
    assert beatless.loops[0].beats.tolist() == [0] and beatless.edges == 0


def _jump_seams(se, pool, table, seed: int) -> tuple[list[float], list[float]]:
    """Render a minute with jumps; check each lands where the table says; (clicks, dips)."""
    out, jumps = render(pool[0].audio, Brancher(table, seed=seed), 60.0)
    assert len(jumps) >= 6, jumps
    assert any(j["from"]["loop"] != j["to"]["loop"] for j in jumps)
    keys = [lp.key for lp in pool]
    mono = out.mean(axis=1).astype(np.float64)
    clicks, dips = [], []
    for ev in jumps:
        li, bi = keys.index(ev["from"]["loop"]), ev["from"]["beat"]
        lj, bj = keys.index(ev["to"]["loop"]), ev["to"]["beat"]
        (edge,) = [j for j in table.jumps[li][bi] if (j.loop, j.beat) == (lj, bj)]
        # after the crossfade the stream is the target loop, sample for sample
        at = ev["at"] + table.fade
        if at + 2000 < out.shape[0]:
            frames = pool[lj].audio.shape[0]
            want = pool[lj].audio[(edge.pos + table.fade + np.arange(2000)) % frames]
            np.testing.assert_array_equal(out[at : at + 2000], want)
        m = jump_metrics(se, mono, ev["at"] + table.fade // 2, RATE, window=4.0, full=False)
        if m is not None:
            clicks.append(m["click"])
            dips.append(m["dip_db"])
    assert len(clicks) >= 4
    return clicks, dips


@pytest.mark.parametrize("drums", [1.0, 0.0])
def test_jumps_are_clean_and_land_where_the_table_says(drums):
    se = load_seam_eval()
    if se is None:
        pytest.skip("seam_eval.py not found (set SEAM_EVAL)")
    pool = make_pool(drums)
    clicks, dips = _jump_seams(se, pool, build_table(pool, RATE), seed=3)
    assert np.percentile(clicks, 90) <= 1.5, clicks
    assert min(dips) > -15.0, dips
    if drums == 0.0:
        # the yardstick sees a click where one is: the same jumps cut without a fade
        hard = VariationParams(fade_ms=0.02, max_shift_ms=0.01, soft_below=0.0)
        clicks, _ = _jump_seams(se, pool, build_table(pool, RATE, hard), seed=3)
        assert np.percentile(clicks, 90) > 1.5, clicks


def test_pads_get_a_long_jump_crossfade_and_drums_a_short_one(pool, table):
    # pads without onsets are blended over a long fade (at most half a beat); drums are
    # cut short before the beat so its attack stays whole
    assert table.fade == round(0.030 * RATE)
    pads = build_table(make_pool(drums=0.0), RATE)
    assert pads.fade == BEAT // 2
    assert all(lb.sharpness < 4.0 for lb in pads.loops)
    assert all(lb.sharpness > 4.0 for lb in table.loops)


def test_no_jump_digs_a_hole_in_the_level():
    # b is a with its polarity turned: every a -> b splice cancels itself in the middle
    # of the crossfade (120 ms here, so the hole is wide), though each loop keeps its own
    # level; the splice search may not move the entry point to hide it (max_shift 0.01 ms)
    audio, grid = make_loop(["C", "Am", "F", "G"], 1)
    pool = [PoolLoop("a", audio, grid, 120.0), PoolLoop("b", -audio, grid, 120.0)]
    # (b's beats sound as a's: no novelty asked of a jump, so a:i -> b:i is one)
    params = VariationParams(fade_ms=120.0, max_shift_ms=0.01, novelty_min=0.0)
    guarded = build_table(pool, RATE, params)
    unguarded = build_table(pool, RATE, replace(params, dip_min_db=-np.inf))
    cross = [j for per_beat in unguarded.jumps[0] for j in per_beat if j.loop == 1]
    assert cross, "the control has a -> b jumps"
    # the control's splices do dig a hole, heard in its audio
    out, jumps = render(audio, Brancher(unguarded, seed=1), 30.0)
    mono = out.mean(axis=1).astype(np.float64)
    se = load_seam_eval()
    if se is not None:
        at = [j["at"] + unguarded.fade // 2 for j in jumps if j["to"]["loop"] == "b"]
        assert at, jumps
        dips = [se.level_dip(mono, RATE, 0, (p,))["dip_db"] for p in at]
        assert min(dips) < -20.0, dips
    assert not [j for per_beat in guarded.jumps[0] for j in per_beat if j.loop == 1]


def test_no_jump_is_taken_again_while_it_is_recent(pool, table):
    # the same jump each time the music comes round would be a shorter exact loop
    def repeats(t) -> int:
        count = 0
        for seed in range(4):
            _, jumps = render(pool[0].audio, Brancher(t, seed=seed), 90.0)
            edges = [
                (j["from"]["loop"], j["from"]["beat"], j["to"]["loop"], j["to"]["beat"])
                for j in jumps
            ]
            assert len(edges) >= 10, edges
            count += sum(1 for i in range(1, len(edges)) if edges[i] in edges[max(0, i - 4) : i])
        return count

    assert repeats(table) == 0
    # the control: without the rule this pool repeats its recent jumps
    assert repeats(build_table(pool, RATE, VariationParams(recent_jumps=0))) > 0


def test_a_seed_gives_the_same_path(pool, table):
    a, ja = render(pool[0].audio, Brancher(table, seed=11), 30.0)
    b, jb = render(pool[0].audio, Brancher(table, seed=11), 30.0)
    c, jc = render(pool[0].audio, Brancher(table, seed=12), 30.0)
    assert ja == jb and len(ja) > 0
    np.testing.assert_array_equal(a, b)
    assert jc != ja


def test_no_jumps_while_crossfading_with_another_loop(pool, table):
    """A deck fading in or out of a transition plays on plainly: one change at a time;
    it jumps again once the other loop is gone, at the output's frame count."""
    m = Mixer(RATE, 2, BLOCK, volume=1.0)
    m.play("deck", pool[0].audio, 0.0)
    m.decks[0].set_variation(Brancher(table, seed=3))
    fade = 20.0
    m.play("next", pool[1].audio, fade)  # a long crossfade away from the varying deck
    jumps, frames = [], 0
    while frames < int(2 * fade * RATE):
        m.render(BLOCK)
        frames += BLOCK
        jumps += [d for name, d in m.events if name == "jump"]
        m.events.clear()
    assert not [j for j in jumps if j["key"] == "deck"], "the outgoing deck jumped"
    m.decks[-1].set_variation(Brancher(table, seed=3))
    start = m.clock
    for _ in range(int(30 * RATE) // BLOCK):
        m.render(BLOCK)
    later = [d for name, d in m.events if name == "jump"]
    assert later and all(j["key"] == "next" and j["at"] >= start for j in later)


def test_loop_mode_is_plain_looping_bit_for_bit(pool):
    audio = pool[1].audio
    plain, jumps = render(audio, None, 20.0)
    n = plain.shape[0]
    assert jumps == []
    np.testing.assert_array_equal(plain, np.tile(audio, (n // audio.shape[0] + 1, 1))[:n])
    # a source with no jump to take reads the loop exactly as plain looping does
    still = build_table([PoolLoop("x", audio, None, None)], RATE)
    assert still.edges == 0
    same, jumps = render(audio, Brancher(still, seed=1), 20.0)
    assert jumps == []
    np.testing.assert_array_equal(same, plain)


def test_one_loop_pool_varies_without_short_exact_repetition():
    audio, grid = make_loop(["C", "Am", "C", "G", "F", "Am", "F", "G"], 5)
    brancher = build_brancher(PoolLoop("solo", audio, grid, 120.0), [], RATE, seed=2)
    out, jumps = render(audio, brancher, 181.0)
    assert len(jumps) >= 20
    assert {j["to"]["loop"] for j in jumps} == {"solo"}
    mono = out.mean(axis=1)
    plain, _ = render(audio, None, 61.0)
    assert exact_loop_minutes(plain.mean(axis=1), RATE)[0] >= 0.97  # the measure sees a loop
    best = exact_loop_minutes(mono, RATE)
    assert len(best) == 3 and max(best) < 0.97, best


def test_no_jump_between_identical_halves_of_a_loop():
    """A loop whose two halves are the same music: jumping from one half to the other
    would change nothing a listener hears, so the graph has no such edge; the jumps it
    has lead somewhere else in the progression."""
    half, grid = make_loop(["C", "Am", "F", "G"], 7)
    audio = np.concatenate([half, half])
    n = half.shape[0]
    beats = grid["beats"] + [b + n for b in grid["beats"]]
    twice = {**grid, "beats": beats, "downbeats": beats[::4]}
    table = build_table([PoolLoop("twice", audio, twice, 120.0)], RATE)
    per_half = len(grid["beats"])
    for beat, options in enumerate(table.jumps[0]):
        for j in options:
            assert j.beat % per_half != (beat % per_half), (beat, j.beat)
    # without the novelty rule the same table is full of them
    lax = build_table(
        [PoolLoop("twice", audio, twice, 120.0)], RATE, VariationParams(novelty_min=0.0)
    )
    same = [
        (beat, j.beat)
        for beat, options in enumerate(lax.jumps[0])
        for j in options
        if j.beat % per_half == beat % per_half
    ]
    assert same, "the control: identical halves are the most alike beats"


def test_build_brancher_leaves_out_unreadable_and_mismatched_loops(pool):
    def broken():
        raise OSError("gone")

    mono = PoolLoop("mono", pool[2].audio[:, :1], None, 120.0)
    b = build_brancher(pool[0], [(None, broken), (mono, None), (pool[1], None)], RATE, seed=1)
    assert [lb.key for lb in b.table.loops] == ["a", "b"]


def _events(d) -> list[dict]:
    """The daemon's buffered events, through the control socket's `events` command."""
    import zmq

    s = zmq.Context.instance().socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(f"ipc://{d.runtime}/control.sock")
        s.send_json({"v": 1, "cmd": "events", "args": {"since": 0}})
        assert s.poll(5000)
        return s.recv_json()["result"]["events"]
    finally:
        s.close()


@pytest.mark.slow
def test_daemon_reports_jumps_in_branch_mode(tmp_path):
    from tests.daemon_proc import Daemon, base_config

    config = base_config(tmp_path / "out.wav")
    config["generator"]["seconds"] = 16  # loops of several bars
    config["playback"]["min_play"] = 6.0
    d = Daemon(tmp_path, config)
    try:
        d.start(wait_loop=False)  # a loaded machine may take a minute for the first loop
        jumps: list[dict] = []
        deadline = time.monotonic() + 240
        while not jumps and time.monotonic() < deadline:
            time.sleep(1.0)
            events = _events(d)
            jumps = [e["data"] for e in events if e["event"] == "jump"]
        assert jumps, d.log()
        first = jumps[0]
        assert set(first) >= {"from", "to", "at", "key"}
        assert set(first["from"]) == {"loop", "beat"} and set(first["to"]) == {"loop", "beat"}
        assert "variation: " in d.log()
    finally:
        d.stop()
        d.close()
