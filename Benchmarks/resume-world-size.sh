#!/usr/bin/env bash
# World-size-changing resume on full Fashion-MNIST (not a test; the test uses a small subset):
# the MLP job trained 20 epochs on 2 ranks without interruption, against 10 epochs on A ranks +
# checkpoint + 10 epochs resumed on B ranks, for (A, B) = (2, 1), (1, 2), (2, 3). Prints test
# accuracies and the differences, and writes JSON.
#
# PARTITIONS=6 (default) runs every job with data_partitions: 6 and a global batch of 120, so
# all three changes keep the uninterrupted run's data order; PARTITIONS=0 runs the default
# (partitions = ranks, global batch 128), where 1 → 2 and 2 → 3 change the order.
#
# usage: [PARTITIONS=6] Benchmarks/resume-world-size.sh [EPOCHS=20] [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-20}
OUT=${2:-runs/bench/resume-world-size.json}
HALF=$((EPOCHS / 2))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash cluster/install-deps.sh >/dev/null
swift build -c release >/dev/null
BIN=.build/release
[ -f data/fashion-mnist/manifest.json ] || $BIN/cortado prepare fashion-mnist --out data/fashion-mnist --shards 2 >/dev/null
mkdir -p "$(dirname "$OUT")"
PARTITIONS=${PARTITIONS:-6}
train() { # NP RUN_DIR EPOCHS [--resume]   (FROM: the ranks that started the run; batch_size is theirs)
  local p=()
  [ "$PARTITIONS" -gt 0 ] && p=(--set data_partitions="$PARTITIONS" --set batch_size=$((120 / ${FROM:-$1})))
  mpirun -np "$1" --oversubscribe --bind-to none $BIN/cortado-train jobs/fashion-mlp.yaml --json --run-dir "$2" \
    --set epochs="$3" --set threads=1 --set emit=[] "${p[@]}" ${4:-} | tail -n 1
}
whole=$(train 2 runs/bench/ws-whole "$EPOCHS" --overwrite)
results=()
for pair in "2 1" "1 2" "2 3"; do
  set -- $pair
  train "$1" "runs/bench/ws-$1-$2" "$HALF" --overwrite >/dev/null
  results+=("{\"from\": $1, \"to\": $2, \"summary\": $(FROM=$1 train "$2" "runs/bench/ws-$1-$2" "$EPOCHS" --resume)}")
done
python3 - "$OUT" "$whole" "${results[@]}" <<'PY'
import json, sys, datetime
out, whole = sys.argv[1], json.loads(sys.argv[2])
runs = [json.loads(r) for r in sys.argv[3:]]
base = whole["test"]["fp32_accuracy"]
print(f"uninterrupted, 2 ranks: test accuracy {base:.4f}")
for r in runs:
    a = r["summary"]["test"]["fp32_accuracy"]
    r["difference_points"] = 100 * (a - base)
    print(f"{r['from']} → {r['to']} ranks: {a:.4f} ({100 * (a - base):+.2f} points)")
json.dump({"date": datetime.date.today().isoformat(), "partitions": int(__import__("os").environ.get("PARTITIONS", "6")), "uninterrupted": whole, "resumed": runs}, open(out, "w"), indent=1)
PY
