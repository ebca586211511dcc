"""Stand-in programs for the tests, run with the test's own interpreter.

A script's `#!/usr/bin/env python3` line would run whatever `python3` is first on PATH,
which on a fresh machine has none of the venv's packages. The daemon runs a stand-in
as an executable file (the real binaries' contract), so each one gets a tiny shell
wrapper that execs `sys.executable` on the script.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def python_program(dest: Path, script: Path, *, env: dict[str, str] | None = None) -> Path:
    """Write an executable at `dest` that runs `script` with this interpreter."""
    assigns = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    dest.write_text(
        f'#!/bin/sh\n{assigns}exec {shlex.quote(sys.executable)} {shlex.quote(str(script))} "$@"\n'
    )
    dest.chmod(0o755)
    return dest
