#!/usr/bin/env bash
# Sparse-kernel crossover (not a test): the trained Fashion-MNIST MLP pruned one-shot to a range
# of sparsities, stored int8 as CSR, then scored by cortado-infer with the pruned layers run
# dense (densified, int8 GEMM) and sparse (CSR kernel), batch 1 latency, batch 64 and 1024 rows/s,
# 1 thread, same rows. The density below which sparse wins is what SparseLayer.maxDensity
# encodes. Prints a table and writes JSON.
#
# usage: Benchmarks/sparse-crossover.sh [MODEL] [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-runs/fashion-mlp/model-fp32.cmodel}
OUT=${2:-runs/bench/sparse-crossover.json}
BIN=.build/release
[ -f "$MODEL" ] || { echo "sparse-crossover: $MODEL not found (run cluster/quickstart.sh first)" >&2; exit 2; }
swift build -c release >/dev/null
DIR=runs/bench/sparse-crossover
mkdir -p "$DIR" "$(dirname "$OUT")"
recipes=()
for s in 0.5 0.7 0.8 0.85 0.9 0.95 0.98; do recipes+=(--recipe "prune$s+int8"); done
$BIN/cortado compress "$MODEL" "${recipes[@]}" --data data/fashion-mnist/manifest.json --out "$DIR" >/dev/null
echo "[" > "$OUT.tmp"
printf "%-10s %-7s %12s %12s %14s\n" sparsity kernel "b1 p50 ms" "b64 rows/s" "b1024 rows/s"
first=1
for s in 0.5 0.7 0.8 0.85 0.9 0.95 0.98; do
  for mode in never always; do
    j=$($BIN/cortado-infer "$DIR/model-prune$s+int8.cmodel" --input data/fashion-mnist/test.h5 --bench --batches 64,1024 --sparse $mode --json)
    kernel=$([ $mode = never ] && echo dense || echo sparse)
    python3 - "$s" "$kernel" "$j" <<'PY'
import json, sys
r = json.loads(sys.argv[3])
print(f"{sys.argv[1]:<10} {sys.argv[2]:<7} {r['batch1_latency_ms']['p50']:12.4f} {r['throughput'][0]['rows_per_sec']:12.0f} {r['throughput'][1]['rows_per_sec']:14.0f}")
PY
    [ $first = 1 ] || echo "," >> "$OUT.tmp"; first=0
    echo "{\"sparsity\": $s, \"kernel\": \"$kernel\", \"bench\": $j}" >> "$OUT.tmp"
  done
done
echo "]" >> "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
echo "json: $OUT"
