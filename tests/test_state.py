"""Persisted state: atomic writes, validation, corrupt files set aside."""

from __future__ import annotations

import json
import os

import pytest

from infiniloopd.state import State, load_state, save_state, state_path


def test_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    st = State(prompt="rainy jazz", preset="rain", volume=33, paused=True, crossfade=2.5,
               min_play=30.0, generator={"model": "medium", "seconds": 12.0},
               stats={"synth/x": {"clips": 3}})  # fmt: skip
    path = save_state(st)
    assert path == state_path() == tmp_path / "infiniloop" / "state.json"
    back = load_state()
    assert (back.prompt, back.preset, back.volume, back.paused) == ("rainy jazz", "rain", 33, True)
    assert (back.crossfade, back.min_play) == (2.5, 30.0)
    assert back.generator == {"model": "medium", "seconds": 12.0}
    assert back.stats == {"synth/x": {"clips": 3}}
    # No temp files left beside it.
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_missing_file_is_a_fresh_state(tmp_path):
    assert load_state(tmp_path / "nope.json") == State()


def test_corrupt_file_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    st = load_state(path)
    assert st == State()
    assert not path.exists()
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert "corrupt state file" in caplog.text


def test_invalid_values_fall_back_to_defaults(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "prompt": 5,
                "volume": 400,
                "paused": "yes",
                "crossfade": -1,
                "min_play": "x",
                "generator": {"binary": "/bin/sh", "model": "small"},
            }  # fmt: skip
        )
    )
    st = load_state(path)
    assert (st.prompt, st.volume, st.paused, st.crossfade, st.min_play) == (
        None,
        None,
        False,
        None,
        None,
    )
    # Only run-time generator keys survive; never a binary path from the state file.
    assert st.generator == {"model": "small"}


def test_non_object_is_corrupt(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("[1, 2]")
    assert load_state(path) == State()
    assert list(tmp_path.glob("state.json.corrupt-*"))


def test_history_round_trips_and_malformed_entries_are_dropped(tmp_path):
    path = tmp_path / "state.json"
    good = {"id": "20261128-1", "prompt": "rain", "bpm": 90.0, "seconds": 8.0, "started": 1e9}
    save_state(State(history=[good]), path)
    assert load_state(path).history == [good]
    path.write_text(
        json.dumps({"history": [good, "x", {"id": 3}, {"id": "no-time"}, {**good, "bpm": "fast"}]})
    )
    back = load_state(path).history
    assert back == [good, {**good, "bpm": None}]


def test_texts_that_may_not_enter_are_dropped_not_persisted(tmp_path):
    path = tmp_path / "state.json"
    # json.dumps writes the lone surrogate as the escape a client would send.
    path.write_text(
        json.dumps(
            {
                "prompt": "calm \ud800 pads",
                "preset": "bell\x07",
                "volume": 10**400,
                "crossfade": 1e308 * 10,
                "stats": {"synth/x": {"clips": 3, "deep": {"a": [1]}}, "\udcff": {"clips": 1}},
                "history": [
                    {"id": "a\ud800", "started": 1.0},
                    {"id": "ok", "started": 2.0, "prompt": "x\x1b[31m"},
                ],
            }
        )
    )
    st = load_state(path)
    assert (st.prompt, st.preset, st.volume, st.crossfade) == (None, None, None, None)
    assert st.stats == {"synth/x": {"clips": 3}}
    assert [h["id"] for h in st.history] == ["ok"] and st.history[0]["prompt"] == ""
    save_state(st, path)
    path.read_bytes().decode("utf-8")  # strict: nothing invalid written back
    assert "\\ud" not in path.read_text()


@pytest.mark.parametrize("kind", ["binary", "huge-int", "deep", "huge", "dir", "fifo", "nul"])
def test_any_unreadable_state_is_moved_aside_and_the_start_goes_on(tmp_path, caplog, kind):
    path = tmp_path / "state.json"
    if kind == "binary":
        path.write_bytes(b'{"prompt": "\xff\xfe"}')
    elif kind == "huge-int":
        path.write_text('{"volume": ' + "9" * 5000 + "}")
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "huge":
        path.write_text('{"prompt": "' + "x" * 2_000_000 + '"}')
    elif kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b"\0\0\0")
    assert load_state(path) == State()
    assert not path.exists()
    assert len(list(tmp_path.glob("state.json.corrupt-*"))) == 1
    warnings = [r for r in caplog.records if "corrupt state file" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
