#!/usr/bin/env bash
# Create (or reuse) .venv, install the project with its test extras, lint, run the tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh test
ruff check .
python -m pytest "$@"
