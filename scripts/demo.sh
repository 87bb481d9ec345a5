#!/usr/bin/env bash
# Runs a named pipeline end to end: train, evaluate on its test split, print sample predictions.
# Usage: bash scripts/demo.sh [PIPELINE] [s2s train options...]   (default: translate-de-en-demo)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=$("$repo/scripts/env.sh" | tail -n 1)
bin=$(dirname "$python")
if [ -z "${S2S_DATA_DIR:-}" ] && [ -d "$repo/../shared/data" ]; then
  export S2S_DATA_DIR="$repo/../shared/data"
fi
name=${1:-translate-de-en-demo}
shift || true
cd "$repo"
run="runs/$name/$(date +%Y%m%d-%H%M%S)"
"$bin/s2s" train "$name" --out "$run" "$@"
"$bin/s2s" evaluate "$run"
echo "sample predictions (source -> prediction | reference):"
"$python" - "$run" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
result = json.loads((run / "eval" / "test.metrics.json").read_text())
predictions = (run / "eval" / "test.predictions.txt").read_text(encoding="utf-8").splitlines()
from pipelines.runs import Run
loaded = Run.open(run)
data = loaded.task.load(result["data"], "test")
for i in range(0, len(predictions), max(1, len(predictions) // 5))[:5]:
    print(f"  {data[i]['source']}\n    -> {predictions[i]}\n    |  {data[i]['target']}")
print(f"{result['primary']} = {result[result['primary']]:.2f}  ({result['signature']})")
PY
