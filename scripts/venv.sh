# Sourced by demo.sh and test.sh: create .venv if needed and install the project into it.
# Usage: source scripts/venv.sh [EXTRAS]   (e.g. "test")
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac  # PATH below needs it absolute
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ -n "${1:-}" ]; then
  "$VENV/bin/python" -m pip install --quiet -c scripts/constraints.txt -e ".[$1]"
else
  "$VENV/bin/python" -m pip install --quiet -c scripts/constraints.txt -e .
fi
export PATH="$VENV/bin:$PATH"
