# Shared by the scripts: create .venv with Python >= 3.11 and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

pick_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

setup_env() {  # $1: pip extras, e.g. "dev" or ""
  local extras="${1:-}" py stamp spec
  if [ ! -x .venv/bin/python ]; then
    py="$(pick_python)"
    echo "creating .venv with $("$py" --version)"
    "$py" -m venv .venv
  fi
  spec="."
  [ -n "$extras" ] && spec=".[$extras]"
  stamp=".venv/.installed-$(cat pyproject.toml | .venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')-${extras:-base}"
  if [ ! -f "$stamp" ]; then
    echo "installing the project and its dependencies into .venv (first run takes a few minutes) ..."
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$spec"
    touch "$stamp"
    # compile the numba kernels once, into .venv/numba-cache (or $NUMBA_CACHE_DIR), so the first run
    # loads them; a failure is reported and the first run then compiles them itself
    if ! .venv/bin/python -m rotation_platform.warmup; then
      echo "warning: the numba warm-up failed (see the line above); the first run compiles the kernels" >&2
    fi
  fi
  export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT/.dagster_home}"
  mkdir -p "$DAGSTER_HOME"
  [ -f "$DAGSTER_HOME/dagster.yaml" ] || cp configs/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
  # the instance's event log class (resources.event_log) is imported by every Dagster process
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
}
