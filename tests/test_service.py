"""The systemd user unit: rendered by install-service, accepted by systemd-analyze."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def install(tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    r = subprocess.run(
        [sys.executable, "-m", "infiniloopd", "install-service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return r, tmp_path / "config" / "systemd" / "user" / "infiniloop.service"


def test_install_service_writes_unit(tmp_path):
    r, unit = install(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "systemctl --user enable --now infiniloop" in r.stdout
    text = unit.read_text()
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    program = exec_line.removeprefix("ExecStart=").split()[0]
    assert Path(program).is_file() and os.access(program, os.X_OK)
    assert exec_line.endswith(" run")
    for line in (
        "Type=notify",
        "ExecReload=kill -HUP $MAINPID",
        "Restart=on-failure",
        "After=pipewire-pulse.service pulseaudio.service sound.target",
    ):
        assert line in text
    assert "WatchdogSec=" in text and "Nice=" in text
    # Running it again reports the unit as unchanged.
    again, _ = install(tmp_path)
    assert again.stdout.startswith("unchanged")


def test_shipped_unit_is_the_packaged_one():
    from infiniloopd.cli_service import unit_template

    assert unit_template() == (ROOT / "packaging" / "infiniloop.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    r, unit = install(tmp_path)
    assert r.returncode == 0
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    v = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert v.returncode == 0, v.stderr
    assert "infiniloop.service" not in v.stderr, v.stderr  # no warnings about our unit


def test_cron_example_uses_only_known_presets():
    from infiniloopd.presets import load_presets

    presets = load_presets(Path("/nonexistent"))
    lines = (ROOT / "packaging" / "cron.example").read_text().splitlines()
    used = [
        line.split(" preset ", 1)[1].split()[0]
        for line in lines
        if " preset " in line and not line.lstrip().startswith("#")
    ]
    assert used and set(used) <= set(presets)
