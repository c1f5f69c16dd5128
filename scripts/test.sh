#!/usr/bin/env bash
# Create (or reuse) .venv, install the project with its test extras, lint, run the tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
