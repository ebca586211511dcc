"""The config schema: defaults, the shipped file, and one-line errors for bad input."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infiniloopd import paths
from infiniloopd.config import ConfigError, describe, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_is_exactly_the_defaults():
    shipped = parse_config(yaml.safe_load((REPO / "config/infiniloop.yaml").read_text()), "x")
    assert describe(shipped) == describe(parse_config(None))


def test_shipped_config_comments_every_key():
    text = (REPO / "config/infiniloop.yaml").read_text().splitlines()
    flat = describe(parse_config(None))
    for section, keys in flat.items():
        names = keys.keys() if isinstance(keys, dict) else [section]
        for key in names:
            idx = next(
                (
                    i
                    for i, line in enumerate(text)
                    if line.strip().lstrip("# ").startswith(f"{key}:")
                ),
                None,
            )
            assert idx is not None, f"{section}.{key} missing from config/infiniloop.yaml"
            # A key is documented by the comment block above it or above its group.
            above = idx - 1
            while above > 0 and ":" in text[above] and not text[above].strip().startswith("#"):
                above -= 1
            assert text[above].strip().startswith("#"), f"{section}.{key} has no comment"


def test_defaults_follow_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_MUSIC_DIR", str(tmp_path / "music"))
    cfg = parse_config(None)
    assert cfg.library.dir == tmp_path / "data" / "infiniloop" / "loops"
    assert cfg.library.music_dir == tmp_path / "music" / "infiniloop"
    assert cfg.output.backend == "auto" and cfg.output.rate == 48000
    assert cfg.generator.backend == "synth"


def test_values_are_converted(tmp_path):
    cfg = parse_config(
        {
            "generator": {"seconds": 12, "backend": "command", "command": ["gen", "{output}"]},
            "output": {"backend": "file", "path": "~/out.wav", "rate": 44100.0},
            "playback": {"volume": 55},
            "library": {"dir": str(tmp_path)},
        },
        "c.yaml",
    )
    assert cfg.generator.seconds == 12.0 and isinstance(cfg.generator.seconds, float)
    assert cfg.output.rate == 44100 and isinstance(cfg.output.rate, int)
    assert cfg.output.path == Path.home() / "out.wav"
    assert cfg.library.dir == tmp_path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"playback": {"crossfade": "long"}},
            'config.yaml: playback.crossfade: expected seconds between 0 and 60, got "long"',
        ),
        ({"playback": {"crossfade": 61}}, "config.yaml: playback.crossfade: expected seconds"),
        ({"playback": {"volume": True}}, "playback.volume: expected an integer between 0 and 100"),
        ({"output": {"rate": 1.5}}, "output.rate: expected an integer between 8000 and 192000"),
        ({"output": {"backend": "jack"}}, "output.backend: expected one of auto, pulse"),
        ({"generator": {"model": "huge"}}, "generator.model: expected one of small,"),
        ({"generator": {"seconds": 0}}, "generator.seconds: expected seconds between 5 and 30"),
        ({"generator": {"command": "gen {output}"}}, "generator.command: expected a list"),
        ({"generator": {"backend": "command"}}, "generator.command: expected a command list"),
        ({"output": {"backend": "file"}}, "output.path: expected a WAV file path"),
        ({"colour": "red"}, "config.yaml: colour: unknown key (known keys: analysis"),
        ({"output": {"colour": 1}}, "config.yaml: output.colour: unknown key"),
        ({"output": [1, 2]}, "config.yaml: output: expected a mapping of keys, got [1, 2]"),
        ([1, 2], "config.yaml: top level: expected a mapping of keys"),
        ({"prompt": ""}, "config.yaml: prompt: expected a non-empty prompt"),
        ({"prompt": "x" * 2000}, "config.yaml: prompt: expected a non-empty prompt"),
        ({"analysis": {"min_loop": 8, "max_loop": 4}}, "analysis.max_loop: expected at least"),
        ({"control": {"endpoint": "http://x"}}, "control.endpoint: expected an ipc:// or tcp://"),
        ({"control": {"endpoint": "tcp://127.0.0.1:5555"}}, "needs control.curve_secret_key_file"),
    ],
)
def test_bad_values_give_one_line_naming_key_expected_and_got(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data, "config.yaml")
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ConfigError) as info:
        parse_config({"output": {"rate": "9" * 500}}, "c.yaml")
    assert len(str(info.value)) < 200


def test_yaml_syntax_error_reports_line_and_column(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("prompt: ok\noutput:\n  rate: [48000\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: line 4, column 1:")


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_user_config_is_found_via_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load_config().source == "<defaults>"
    (tmp_path / "infiniloop").mkdir()
    (tmp_path / "infiniloop" / "config.yaml").write_text("playback:\n  volume: 33\n")
    cfg = load_config()
    assert cfg.playback.volume == 33
    assert cfg.source.endswith("infiniloop/config.yaml")


def test_empty_file_means_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert describe(load_config(path)) == describe(parse_config(None))


def test_runtime_dir_fallbacks(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.runtime_dir() == tmp_path / "infiniloop"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    expected = {Path(f"/run/user/{os.getuid()}/infiniloop"), Path(f"/tmp/infiniloop-{os.getuid()}")}
    assert paths.runtime_dir() in expected
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")  # invalid per the spec: ignored
    assert paths.runtime_dir() in expected


def test_private_dir_is_0700_and_others_dirs_are_never_chmodded(tmp_path):
    old_umask = os.umask(0o022)
    try:
        d = paths.ensure_private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    # A directory it did not create keeps its mode: readable by others is the owner's call,
    os.chmod(d, 0o755)
    paths.ensure_private_dir(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o755
    # writable by others is refused in one line, and still not changed.
    os.chmod(d, 0o777)
    with pytest.raises(paths.UserError, match="writable by others") as info:
        paths.ensure_private_dir(d)
    assert "\n" not in str(info.value) and stat.S_IMODE(d.stat().st_mode) == 0o777


def test_private_dir_refuses_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(paths.UserError, match="expected a directory"):
        paths.ensure_private_dir(f)


def test_bad_config_on_the_command_line_is_one_line_without_traceback(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("playback:\n  crossfade: long\n")
    proc = subprocess.run(
        [sys.executable, "-m", "infiniloopd", "play", "--config", str(path), "x.wav"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (
        f'infiniloopd: {path}: playback.crossfade: expected seconds between 0 and 60, got "long"'
    )
    assert "Traceback" not in proc.stderr


def test_unquoted_null_backend_means_the_null_output(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output:\n  backend: null\n")
    assert load_config(path).output.backend == "null"


def test_every_bad_key_is_reported_at_once_one_line_each():
    data = {
        "generatr": {"backend": "synth"},
        "playback": {"crossfade": "long", "volum": 3, "volume": 200},
        "output": {"rate": 10**400},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    lines = str(info.value).splitlines()
    assert lines == info.value.problems
    assert lines == [
        "c.yaml: generatr: unknown key, did you mean generator?",
        'c.yaml: playback.crossfade: expected seconds between 0 and 60, got "long"',
        "c.yaml: playback.volum: unknown key, did you mean volume?",
        "c.yaml: playback.volume: expected an integer between 0 and 100, got 200",
        "c.yaml: output.rate: expected an integer between 8000 and 192000, got "
        + "1"
        + "0" * 56
        + "...",
    ]


def test_a_rule_on_a_key_already_reported_is_not_repeated():
    with pytest.raises(ConfigError) as info:
        parse_config({"generator": {"backend": "command", "command": "x"}}, "c.yaml")
    assert info.value.problems == [
        'c.yaml: generator.command: expected a list of strings, e.g. ["my-gen", "{prompt}", '
        '"{seconds}", "{output}"], got "x"'
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # 333 bytes that expand to billions of values with an alias-expanding loader.
        (
            'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
            + "".join(
                f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            ),
            "line 1, column 4: anchors and aliases (&name, *name) are not supported",
        ),
        ("prompt: &p calm\n", "anchors and aliases"),
        ("playback:\n  volume: " + "9" * 400 + "\n", "playback.volume: expected an integer"),
        ("playback:\n  crossfade: 1e400\n", "playback.crossfade: expected seconds"),
        ("prompt: " + "[" * 200 + "]" * 200 + "\n", "nested more than 32 levels deep"),
        ('prompt: "calm \\ud800 pads"\n', "invalid Unicode"),
        ('prompt: "calm \\x07 pads"\n', "prompt: expected a non-empty prompt"),
        ("prompt: " + "9" * 5000 + "\n", "c.yaml: "),
    ],
)
def test_yaml_is_parsed_with_bounds(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path) + ":")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["fifo", "dir", "huge", "binary", "nul"])
def test_config_that_is_not_a_small_text_file_is_one_line(tmp_path, kind):
    path = tmp_path / "c.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "dir":
        path.mkdir()
    elif kind == "huge":
        path.write_text("# " + "x" * 300_000 + "\n")
    elif kind == "binary":
        path.write_bytes(b"prompt: \xff\xfe\n")
    else:
        path.write_bytes(b"prompt: a\0b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: cannot read: ") and "\n" not in text
