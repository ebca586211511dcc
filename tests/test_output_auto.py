"""`output.backend: auto` on a machine with no sound: null, with one line that helps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

NO_CARDS = (
    not Path("/proc/asound/cards").exists()
    or "no soundcards" in Path("/proc/asound/cards").read_text()
)


@pytest.mark.skipif(not NO_CARDS, reason="this machine has a sound card")
def test_auto_without_server_or_card_is_null_with_one_clean_warning(tmp_path):
    code = (
        "import logging\n"
        "logging.basicConfig(format='%(levelname)s %(message)s')\n"
        "from infiniloopd.config import parse_config\n"
        "from infiniloopd.outputs import make_output\n"
        "out = make_output(parse_config(None).output)\n"
        "print(out.name)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PULSE_SERVER": f"unix:{tmp_path}/no-such-server",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "null"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("WARNING no sound server or ALSA device found; playing to null")
    assert "PulseAudio or PipeWire" in lines[0]
