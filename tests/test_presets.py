"""Mood presets: the shipped ones, user overrides, one-line validation errors."""

from __future__ import annotations

import pytest

from infiniloopd.presets import PresetError, load_presets, parse_presets

REQUIRED = [
    "morning",
    "focus",
    "chill",
    "evening",
    "night",
    "rain",
    "lofi",
    "ambient",
    "jazz",
    "techno",
    "cinematic",
    "chiptune",
    "piano",
    "synthwave",
]


def test_shipped_presets(tmp_path):
    presets = load_presets(tmp_path / "none.yaml")
    assert set(REQUIRED) <= set(presets)
    for name in REQUIRED:
        assert presets[name].prompt.strip(), name
    assert presets["ambient"].generator == {"seconds": 25.0}


def test_user_presets_add_and_override(tmp_path):
    user = tmp_path / "presets.yaml"
    user.write_text(
        "focus: my own focus prompt\n"
        "sauna:\n  prompt: hot steamy dub\n  generator:\n    seconds: 10\n    model: medium\n"
    )
    presets = load_presets(user)
    assert presets["focus"].prompt == "my own focus prompt"
    assert presets["focus"].source == str(user)
    assert presets["sauna"].generator == {"seconds": 10.0, "model": "medium"}
    assert presets["jazz"].source.startswith("presets.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a mapping of preset names"),
        ("Bad Name: x\n", "expected a preset name"),
        ("x:\n  prompt: ''\n", "x.prompt: expected a non-empty prompt"),
        ("x:\n  prompt: p\n  colour: red\n", "x.colour: unknown key"),
        ("x:\n  prompt: p\n  generator:\n    seconds: 99\n", "generator.seconds: expected seconds"),
        (
            "x:\n  prompt: p\n  generator:\n    binary: /bin/sh\n",
            "x.generator.binary: not settable",
        ),
        ("x: [unclosed\n", "line"),
        ("x: 5\n", "x: expected a prompt or a mapping"),
    ],
)
def test_invalid_user_presets_give_one_line(tmp_path, text, message):
    user = tmp_path / "presets.yaml"
    user.write_text(text)
    with pytest.raises(PresetError) as info:
        load_presets(user)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert str(user) in text


def test_parse_empty():
    assert parse_presets(None, "x") == {}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "cannot read: not a regular file"),
        ("alias", "anchors and aliases"),
        ("huge", "cannot read: larger than"),
        ("control", "rain.prompt: expected a non-empty prompt"),
        ("binary", "cannot read: not UTF-8"),
    ],
)
def test_a_hostile_user_presets_file_is_one_line(tmp_path, kind, message):
    import os

    path = tmp_path / "presets.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "alias":
        path.write_text("a: &p {prompt: x}\nb: *p\n")
    elif kind == "huge":
        path.write_text("# " + "x" * 400_000 + "\n")
    elif kind == "control":
        path.write_text('rain: "drops \\x07 on glass"\n')
    else:
        path.write_bytes(b"rain: \xff\n")
    with pytest.raises(PresetError) as info:
        load_presets(path)
    assert message in str(info.value) and "\n" not in str(info.value)
