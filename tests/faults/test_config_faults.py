"""Bad config on start and on SIGHUP: each wrong key, type or range gives its one-line
error naming the key; a reload with a bad config keeps the old one in force, and the
audio goes on without a gap."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.daemon_proc import Daemon
from tests.faults.conftest import Pinger, assert_no_gap, fault_config, start_daemon

# (config text, what the one line must say)
BAD = [
    ("playback:\n  crossfade: long\n", "playback.crossfade: expected seconds between 0 and 60"),
    ("playback:\n  crossfade: 61\n", "playback.crossfade: expected seconds between 0 and 60"),
    ("playback:\n  volume: 101\n", "playback.volume: expected an integer between 0 and 100"),
    ("playback:\n  volume: yes\n", "playback.volume: expected an integer"),
    ("output:\n  rate: fast\n", "output.rate: expected an integer between 8000 and 192000"),
    ("output:\n  backend: jack\n", "output.backend: expected one of auto, pulse, alsa"),
    ("generator:\n  seconds: 2\n", "generator.seconds: expected seconds between 5 and 30"),
    ("generator:\n  model: huge\n", "generator.model: expected one of small"),
    ("generator:\n  command: rm -rf /\n", "generator.command: expected a list of strings"),
    ("generator:\n  backend: command\n", "generator.command: expected a command list"),
    ("playback:\n  crosfade: 2\n", "playback.crosfade: unknown key"),
    ("bogus: 1\n", "bogus: unknown key"),
    ("playback: 3\n", "playback: expected a mapping of keys"),
    ("analysis:\n  min_loop: 10\n  max_loop: 5\n", "analysis.max_loop: expected at least"),
    ("control:\n  endpoint: tcp://0.0.0.0:5555\n", "control.endpoint: a tcp:// endpoint needs"),
    ("playback:\n  crossfade: [1\n", "expected ',' or ']'"),
    ("- just\n- a list\n", "top level: expected a mapping"),
    # An alias "bomb" (a billion values if expanded), refused before anything is built.
    (
        'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        + "".join(
            f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "anchors and aliases (&name, *name) are not supported",
    ),
    ("output:\n  rate: " + "9" * 400 + "\n", "output.rate: expected an integer between 8000"),
    ("prompt: " + "[" * 5000 + "]" * 5000 + "\n", "line 1, column"),  # too deeply nested
    ("generatr:\n  seconds: 10\n", "generatr: unknown key, did you mean generator?"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_config_at_start(tmp_path, text, message):
    d = Daemon(tmp_path)
    d.write_config(text)
    r = subprocess.run(
        [sys.executable, "-m", "infiniloopd", "--config", str(d.config_path)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr  # one line
    assert message in r.stderr, r.stderr
    assert str(d.config_path) in r.stderr  # names the file
    assert "Traceback" not in r.stderr
    assert not (d.runtime / "control.sock").exists()


def test_every_bad_key_at_start_one_line_each(tmp_path):
    d = Daemon(tmp_path)
    d.write_config("generatr: {}\nplayback:\n  volum: 3\n  crossfade: long\n")
    r = subprocess.run(
        [sys.executable, "-m", "infiniloopd", "--config", str(d.config_path)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 3, r.stderr
    assert lines[0].endswith(f"{d.config_path}: generatr: unknown key, did you mean generator?")
    assert lines[1].endswith(f"{d.config_path}: playback.volum: unknown key, did you mean volume?")
    assert lines[2].endswith(
        f'{d.config_path}: playback.crossfade: expected seconds between 0 and 60, got "long"'
    )
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("confhup")
    cfg = fault_config(root / "out.wav", playback={"min_play": 3600, "crossfade": 0.7})
    d = start_daemon(root, cfg)
    try:
        yield d
    finally:
        d.stop()
        d.close()


@pytest.mark.slow
def test_bad_config_on_sighup_keeps_the_old_one(daemon):
    good = yaml.safe_load(daemon.config_path.read_text())
    before = daemon.status()
    start = daemon.frames()
    with Pinger(daemon) as pinger:
        for text, message in BAD:
            daemon.write_config(text)
            lines = daemon.log().count("\n")
            daemon.signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while message not in "".join(daemon.log().splitlines(True)[lines:]):
                assert time.monotonic() < deadline, f"no error logged for {message!r}"
                time.sleep(0.05)
            new = daemon.log().splitlines()[lines:]
            errors = [line for line in new if message in line]
            assert len(errors) == 1, new  # said once, on one line
            assert "Traceback" not in "\n".join(new)
            # The `reload` command gives the same one-line error as a refusal.
            r = daemon.ctl("reload")
            assert r.returncode == 1 and message in r.stderr and r.stderr.count("\n") == 1
            st = daemon.status()
            assert st["crossfade"] == 0.7 and st["volume"] == before["volume"]
            assert st["output"] == before["output"] and st["generator"] == before["generator"]
            assert daemon.proc.poll() is None
    pinger.check()
    assert_no_gap(daemon.samples()[start:], "during bad reloads")
    # A good config still applies afterwards.
    good["playback"]["crossfade"] = 1.5
    daemon.write_config(good)
    daemon.signal(signal.SIGHUP)
    daemon.wait_status(lambda s: s["crossfade"] == 1.5, 10, "the good config")
