"""The client reads only `control.endpoint` from the config, and starts light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infiniloopd import protocol
from infiniloopd.errors import UserError

HEAVY = ("numpy", "scipy", "librosa", "soundfile", "infiniloopd.config", "infiniloopd.daemon")


def endpoint_of(path: Path, text: str) -> str:
    path.write_text(text)
    return protocol.resolve_endpoints(config_path=path, read_config=True).control


def test_mistakes_in_daemon_keys_do_not_matter(tmp_path):
    text = (
        "generatr: {backend: synth}\n"
        "output: {rate: fast, backend: nonsense}\n"
        "generator: {soundfont: /no/such/file.sf2}\n"
        "control:\n  endpoint: ipc:///tmp/elsewhere.sock\n  unknown_key: 3\n"
    )
    assert endpoint_of(tmp_path / "c.yaml", text) == "ipc:///tmp/elsewhere.sock"


def test_unparsable_file_means_the_default_endpoint(tmp_path):
    text = "control: {endpoint: tcp://127.0.0.1:7000\noutput: [unclosed\n"
    assert endpoint_of(tmp_path / "c.yaml", text) == protocol.default_control_endpoint()


def test_alias_bomb_is_not_expanded(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]")
    lines.append("control: {endpoint: ipc:///tmp/bomb.sock}")
    assert endpoint_of(tmp_path / "c.yaml", "\n".join(lines) + "\n") == "ipc:///tmp/bomb.sock"


@pytest.mark.parametrize("value", ["[1, 2]", "http://example.invalid/", "{a: b}", "12"], ids=str)
def test_bad_endpoint_named_with_file_and_key(tmp_path, value):
    path = tmp_path / "c.yaml"
    with pytest.raises(UserError) as err:
        endpoint_of(path, f"control:\n  endpoint: {value}\n")
    assert f"{path}: control.endpoint: expected an ipc:// or tcp://" in str(err.value)


def test_client_start_imports_nothing_heavy(tmp_path):
    config = tmp_path / "config" / "infiniloop"
    config.mkdir(parents=True)
    sock = tmp_path / "nobody.sock"
    (config / "config.yaml").write_text(
        f"output: {{rate: 1}}\ncontrol: {{endpoint: ipc://{sock}}}\n"
    )
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    env.pop("INFINILOOP_ENDPOINT", None)
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "infiniloopctl", "status", "--timeout", "0.3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 3, r.stderr[-2000:]  # no daemon at that endpoint
    imported = {
        line.split("|")[-1].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "infiniloopd.protocol" in imported  # the measurement itself works
    assert "yaml" in imported  # the config was read for its endpoint
    assert not [m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY]
