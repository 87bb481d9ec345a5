#!/usr/bin/env bash
# Creates (or reuses) the virtual environment and installs this checkout into it.
# The environment lives outside the clone, keyed by a hash of the dependency list,
# so a fresh clone with unchanged dependencies does not reinstall torch.
# Prints the path of the environment's python on its last line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
hash=$(python3 - "$repo/pyproject.toml" <<'PY'
import hashlib, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
spec = repr((project["dependencies"], project.get("optional-dependencies", {})))
print(hashlib.sha256(spec.encode()).hexdigest()[:16])
PY
)
venv="${S2S_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/s2s/venv-$hash}"
if [ ! -f "$venv/.complete" ]; then
  echo "creating environment $venv (first time for this dependency list)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! { "$venv/bin/pip" install --upgrade pip && "$venv/bin/pip" install -e "$repo[test]"; } > "$venv.log" 2>&1; then
    tail -n 20 "$venv.log" >&2
    echo "error: installing the environment failed; full log in $venv.log" >&2
    exit 2
  fi
  touch "$venv/.complete"
fi
# Point the shared environment at this checkout (fast: no dependency changes).
# The external example plugin is installed through its own entry point, like any third-party one.
if ! { "$venv/bin/pip" install --no-deps --no-build-isolation -e "$repo" \
       && "$venv/bin/pip" install --no-deps --no-build-isolation -e "$repo/examples/s2s-dialogue"; } > "$venv.editable.log" 2>&1; then
  tail -n 20 "$venv.editable.log" >&2
  exit 2
fi
echo "$venv/bin/python"
