#!/usr/bin/env bash
# Runs the test suite in the project's environment (created on first use).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=$("$repo/scripts/env.sh" | tail -n 1)
if [ -z "${S2S_DATA_DIR:-}" ] && [ -d "$repo/../shared/data" ]; then
  export S2S_DATA_DIR="$repo/../shared/data"
fi
cd "$repo"
# With no arguments: s2s's tests and the external example plugin's own tests.
if [ "$#" -eq 0 ]; then
  set -- tests examples/s2s-dialogue/tests
fi
exec "$python" -m pytest "$@"
