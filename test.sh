#!/usr/bin/env bash
# Run the whole test suite: make sure what it needs is installed, lint, then pytest.
# Extra arguments go to pytest (e.g. ./test.sh -k mixer -x).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
./install.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
