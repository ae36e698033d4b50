#!/usr/bin/env bash
# 16-bit gradient exchange (distributed.precision) on full Fashion-MNIST: the job file's MLP
# (784-256-128-10, SGD + momentum, cosine, 20 epochs) on 2 ranks with fp32, bf16 and fp16
# gradients. Prints each run's test accuracy, samples/s, exchange ms/step and the bytes per
# step the start-up line reports; writes the summaries as JSON lines.
#
# usage: Benchmarks/half-exchange.sh [EPOCHS=20] [NP=2] [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-20}
NP=${2:-2}
OUT=${3:-runs/bench/half-exchange.jsonl}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
BIN=.build/release
[ -x $BIN/cortado-train ] || swift build -c release >/dev/null
[ -f data/fashion-mnist/manifest.json ] || $BIN/cortado prepare fashion-mnist --out data/fashion-mnist --shards 2 >/dev/null
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
for p in fp32 bf16 fp16; do
  log=runs/bench/half-$p.log
  mpirun -np "$NP" --oversubscribe --bind-to none $BIN/cortado-train jobs/fashion-mlp.yaml --json \
    --run-dir runs/bench/half-$p --overwrite --set epochs="$EPOCHS" --set threads=1 --set emit=[] \
    --set distributed.precision=$p >"$log"
  tail -n 1 "$log" >>"$OUT"
  python3 - "$p" "$log" <<'PY'
import json, re, sys
p, log = sys.argv[1], sys.argv[2]
lines = open(log).read().splitlines()
s = json.loads(lines[-1])
ex = next((l for l in lines if "gradient exchange:" in l), "")
m = re.search(r"([0-9.]+) MiB sent per rank per step", ex)
print(f"{p}: test accuracy {s['test']['fp32_accuracy']:.4f}, {s['samples_per_sec']:.0f} samples/s, "
      f"exchange {s['step_ms'].get('exchange', float('nan')):.2f} ms/step, "
      f"sent/rank/step {m.group(1) + ' MiB' if m else 'fp32 allreduce'}")
PY
done
