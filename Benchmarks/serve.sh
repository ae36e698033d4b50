#!/usr/bin/env bash
# cortado-infer serve under wrk (not a test): MLP int8 and fp32 and CNN int8, one request = one
# Fashion-MNIST row, at concurrency 1, 8 and 64 — p50/p99 latency and requests/s — and, in the
# same run on the same MLP (exported with `cortado export onnx`), FastAPI + uvicorn + ONNX
# Runtime (Benchmarks/ort_serve.py, pinned versions in a venv this script makes). Also the two
# baselines the goals are stated against: `cortado-infer --bench` batch-1 p50 and the HTTP round
# trip of an empty endpoint (GET /v2/health/live) at concurrency 1. The int8 models also with
# the row as binary tensor data (what tritonclient sends by default). Prints a Markdown table.
#
# usage: Benchmarks/serve.sh [MLP_RUN_DIR] [CNN_RUN_DIR] [SECONDS=4] [ROUNDS=3]
#   MLP_RUN_DIR: model-fp32/-int8.cmodel (cluster/quickstart.sh writes runs/fashion-mlp)
#   CNN_RUN_DIR: model-int8.cmodel of jobs/fashion-cnn.yaml; trained briefly when missing
#   SECONDS per cell and round; ROUNDS passes over every cell, each cell's figures the median of
#   its rounds: on a shared VM one long cell per row caught whatever the minute was doing (two
#   back-to-back single-round runs differed by up to 0.075 ms on one concurrency-1 p50).
# The servers and wrk share the machine: on a 2-core machine the numbers are the whole system's
# (client included), which is what a user of one box sees.
set -euo pipefail
cd "$(dirname "$0")/.."
MLP=${1:-runs/fashion-mlp}
CNN=${2:-runs/bench/serve-cnn}
SECS=${3:-4}
ROUNDS=${4:-3}
CORES=$(nproc)
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# CORTADO_BIN=DIR uses binaries built elsewhere (no build here).
BIN=${CORTADO_BIN:-.build/release}
if [ -z "${CORTADO_BIN:-}" ]; then
  for p in cortado-infer cortado cortado-train; do swift build -c release --product $p >/dev/null; done
fi
[ -f "$MLP/model-int8.cmodel" ] || { echo "serve.sh: $MLP/model-int8.cmodel not found (run cluster/quickstart.sh)" >&2; exit 2; }
if [ ! -f "$CNN/model-int8.cmodel" ]; then
  echo "== training a small CNN (1 epoch, 6000 images) into $CNN" >&2
  [ -f runs/bench/serve-data/manifest.json ] || $BIN/cortado prepare fashion-mnist --out runs/bench/serve-data --limit 6000 --validation 500 >/dev/null
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --bind-to none $BIN/cortado-train jobs/fashion-cnn.yaml \
    --run-dir "$CNN" --overwrite --set data=runs/bench/serve-data/manifest.json --set epochs=1 >/dev/null
fi
VENV=.build/serve-bench-venv
if ! "$VENV/bin/python" -c "import fastapi, uvicorn, onnxruntime" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q fastapi==0.115.6 uvicorn==0.34.0 onnxruntime==1.20.1 numpy==2.2.1
fi
TMP=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"' EXIT
source Benchmarks/serve-common.sh
$BIN/cortado export onnx "$MLP/model-fp32.cmodel" -o "$TMP/mlp.onnx" >/dev/null
"${CORTADO_INFER:-$BIN/cortado-infer}" serve --models "$TMP/models" --port 18080 --cores "$CORES" > "$TMP/serve.out" 2> "$TMP/serve.err" &
PIDS+=($!)
"$VENV/bin/python" Benchmarks/ort_serve.py "$TMP/mlp.onnx" 18081 "$CORES" > "$TMP/ort.out" 2>&1 &
PIDS+=($!)
wait_port 18080 && wait_port 18081
# wrk: threads = min(c, cores); --latency prints the distribution. One line per cell and round
# in $TMP/cells.txt: name, concurrency, p50 and p99 in ms, requests/s, non-2xx.
run() { # NAME URL LUA CONC
  local c=$4 t=$(( $4 < CORES ? $4 : CORES ))
  wrk -t"$t" -c"$c" -d"${SECS}s" --latency ${3:+-s "$3"} "$2" > "$TMP/wrk.txt"
  python3 - "$1" "$c" "$TMP/wrk.txt" >> "$TMP/cells.txt" <<'PY'
import re, sys
name, c, text = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v = float(m.group(1)); return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{name}\t{c}\t{ms('50%')}\t{ms('99%')}\t{rps}\t{non2xx.group(1) if non2xx else 0}")
PY
}
echo "CPU: $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $CORES cores; $ROUNDS rounds of $SECS s per cell"
echo "load at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  run "empty endpoint (GET /v2/health/live)" "http://127.0.0.1:18080/v2/health/live" "" 1
  # The MLP's 7.7 KB body to a model that does not exist: answered 404 before the body is read,
  # so it is what receiving that body and answering costs the server without parsing or scoring
  # (its responses are the non-2xx of its row, by design).
  run "same POST body, unknown model (404 unread)" "http://127.0.0.1:18080/v2/models/none/infer" "$TMP/mlp.lua" 1
  for c in 1 8 64; do
    run "cortado serve MLP int8" "http://127.0.0.1:18080/v2/models/mlp-int8/infer" "$TMP/mlp.lua" $c
    run "cortado serve MLP int8, binary tensors" "http://127.0.0.1:18080/v2/models/mlp-int8/infer" "$TMP/mlp-bin.lua" $c
    run "cortado serve MLP fp32" "http://127.0.0.1:18080/v2/models/mlp-fp32/infer" "$TMP/mlp.lua" $c
    run "cortado serve CNN int8" "http://127.0.0.1:18080/v2/models/cnn-int8/infer" "$TMP/cnn.lua" $c
    run "cortado serve CNN int8, binary tensors" "http://127.0.0.1:18080/v2/models/cnn-int8/infer" "$TMP/cnn-bin.lua" $c
    run "FastAPI+uvicorn+ORT MLP fp32" "http://127.0.0.1:18081/v2/models/mlp/infer" "$TMP/mlp.lua" $c
  done
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "MLP int8 $MLP/model-int8" "MLP fp32 $MLP/model-fp32" "CNN int8 $CNN/model-int8"; do
  set -- $m
  "${CORTADO_INFER:-$BIN/cortado-infer}" "$3.cmodel" --bench --batches 1 --threads 1 --json |
    python3 -c "import json,sys; r=json.load(sys.stdin); print('$1 $2', r['batch1_latency_ms']['p50'], sep='\t')"
done > "$TMP/bench.txt"
echo
python3 - "$TMP/cells.txt" "$TMP/bench.txt" <<'PY'
import statistics, sys
cells = {}
for line in open(sys.argv[1]):
    name, c, p50, p99, rps, bad = line.rstrip("\n").split("\t")
    cells.setdefault((name, c), []).append((float(p50), float(p99), float(rps), int(bad)))
med = {key: [statistics.median(r[k] for r in runs) for k in range(3)] for key, runs in cells.items()}
print("| server / model | concurrency | p50 ms | p99 ms | requests/s | non-2xx | rounds |")
print("|---|---|---|---|---|---|---|")
for (name, c), runs in cells.items():
    p50, p99, rps = med[(name, c)]
    print(f"| {name} | {c} | {p50:.3f} | {p99:.3f} | {rps:.0f} | {sum(r[3] for r in runs)} | {len(runs)} |")
print()
get = med[("empty endpoint (GET /v2/health/live)", "1")][0]
fastapi = med[("FastAPI+uvicorn+ORT MLP fp32", "64")][2]
for line in open(sys.argv[2]):
    model, bench = line.rstrip("\n").split("\t")
    for row in [model] + ([model + ", binary tensors"] if model.endswith("int8") else []):
        p50, rps64 = med[(f"cortado serve {row}", "1")][0], med[(f"cortado serve {row}", "64")][2]
        goal = 2 * float(bench) + get
        print(f"{row}: --bench batch-1 p50 {float(bench):.4f} ms; concurrency 1 p50 {p50:.3f} ms against "
              f"2 × bench + empty GET = {goal:.3f} ms: {'met' if p50 <= goal else 'not met'}; "
              f"concurrency 64: {rps64 / fastapi:.1f}× FastAPI's requests/s")
PY
