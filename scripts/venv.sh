# Sourced by demo.sh and test.sh: create .venv if needed and install the project into it.
# Usage: source scripts/venv.sh [EXTRAS]   (e.g. "test")
# The install is redone only when pyproject.toml, scripts/constraints.txt, the extras or the
# checkout's place changed since the last one that succeeded (a stamp in the venv), so a
# warm checkout starts at once and needs no network.
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac  # PATH below needs it absolute
_mer_extras="${1:-}"
_mer_stamp="$VENV/.mer-di-installed${_mer_extras:+-$_mer_extras}"
_mer_want="$( { cat pyproject.toml scripts/constraints.txt; echo "extras=$_mer_extras";
                echo "checkout=$PWD"; } | cksum)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setting up $VENV; the first run installs PyTorch and the other dependencies, a few" \
       "minutes (later runs reuse it)"
  python3 -m venv "$VENV"
elif [ "$(cat "$_mer_stamp" 2>/dev/null)" != "$_mer_want" ]; then
  echo "updating $VENV (pyproject.toml, scripts/constraints.txt or the extras changed since" \
       "its last install)"
elif ! "$VENV/bin/python" -I -c "import mer_di" 2>/dev/null; then  # light: no torch
  echo "reinstalling the project into $VENV (it no longer imports)"
  rm -f "$_mer_stamp"
fi
if [ "$(cat "$_mer_stamp" 2>/dev/null)" != "$_mer_want" ]; then
  rm -f "$_mer_stamp"
  # -qq: pip's errors only (a failed install still says why), not its warnings about
  # this machine's index settings, one per package
  if "$VENV/bin/python" -m pip install -qq --upgrade pip &&
     "$VENV/bin/python" -m pip install -qq -c scripts/constraints.txt \
       -e ".${_mer_extras:+[$_mer_extras]}"; then
    echo "$_mer_want" > "$_mer_stamp"
  else
    echo "installing the project into $VENV failed (pip's messages above)" >&2
    return 1 2>/dev/null || exit 1
  fi
fi
unset _mer_extras _mer_stamp _mer_want
export PATH="$VENV/bin:$PATH"
