#!/usr/bin/env bash
# cortado-infer against ONNX Runtime (not a test), in one run, on the same rows, 1 thread:
# cortado-infer fp32 and int8 (.cmodel), and ONNX Runtime fp32 (the model exported by
# `cortado export onnx`) and int8 (quantize_dynamic of that export; Benchmarks/ort_bench.py).
# Batch-1 latency p50 and batch-1024 rows/s. cortado-infer runs before and after ONNX Runtime
# and the better of its two runs counts, as ort_bench.py keeps the best of its rounds. Prints a
# table with the ratios and writes JSON.
#
# usage: Benchmarks/infer-vs-onnxruntime.sh [RUN_DIR] [OUT.json]   (RUN_DIR has model-fp32 and model-int8)
#        CORTADO_BIN=DIR runs the binaries in DIR (an earlier build, for before/after) without building.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/fashion-mlp}
OUT=${2:-runs/bench/infer-vs-onnxruntime.json}
PY=/opt/cortado-venv/bin/python
DATA=data/fashion-mnist/test.h5
for f in "$RUN/model-fp32.cmodel" "$RUN/model-int8.cmodel" "$DATA"; do
  [ -f "$f" ] || { echo "infer-vs-onnxruntime: $f not found (run cluster/quickstart.sh first)" >&2; exit 2; }
done
[ -x "$PY" ] || { echo "infer-vs-onnxruntime: $PY missing (run cluster/install-deps.sh)" >&2; exit 2; }
BIN=${CORTADO_BIN:-.build/release}
[ -n "${CORTADO_BIN:-}" ] || swift build -c release >/dev/null
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$(dirname "$OUT")"
$BIN/cortado export onnx "$RUN/model-fp32.cmodel" -o "$TMP/model.onnx" >/dev/null
bench() { for p in fp32 int8; do $BIN/cortado-infer "$RUN/model-$p.cmodel" --input "$DATA" --bench --batches 1024 --threads 1 --json > "$TMP/cortado-$p-$1.json"; done; }
bench 1
$PY Benchmarks/ort_bench.py "$TMP/model.onnx" "$DATA" --json "$TMP/ort.json" >/dev/null
bench 2
$PY - "$TMP" "$OUT" "$RUN" <<'PY'
import json, sys, platform, datetime
tmp, out, run = sys.argv[1:4]
def cortado(p):
    runs = [json.load(open(f"{tmp}/cortado-{p}-{i}.json")) for i in (1, 2)]
    return {"p50_ms": min(r["batch1_latency_ms"]["p50"] for r in runs),
            "rows_per_s": max(r["throughput"][0]["rows_per_sec"] for r in runs), "int8_kernel": runs[0]["int8_kernel"]}
ort = json.load(open(f"{tmp}/ort.json"))
o = {"fp32": ort["results"][0], "int8": ort["results"][1]}
c = {p: cortado(p) for p in ("fp32", "int8")}
print(f"{'runtime':<28} {'b1 p50 ms':>10} {'b1024 rows/s':>13}")
for p in ("fp32", "int8"):
    print(f"{'cortado-infer ' + p:<28} {c[p]['p50_ms']:>10.4f} {c[p]['rows_per_s']:>13.0f}")
    print(f"{'ONNX Runtime ' + p:<28} {o[p]['p50_ms']:>10.4f} {o[p]['rows_per_s']:>13.0f}")
ratios = {p: {"latency_speedup": o[p]["p50_ms"] / c[p]["p50_ms"], "throughput_ratio": c[p]["rows_per_s"] / o[p]["rows_per_s"]} for p in ("fp32", "int8")}
for p in ("fp32", "int8"):
    print(f"{p}: cortado batch-1 latency {ratios[p]['latency_speedup']:.2f}x faster, batch-1024 throughput {ratios[p]['throughput_ratio']:.2f}x ORT's")
res = {"date": datetime.date.today().isoformat(), "machine": platform.node(), "run_dir": run, "onnxruntime": ort["onnxruntime"],
       "threads": 1, "cortado": c, "onnxruntime_results": o, "ratios": ratios}
json.dump(res, open(out + ".tmp", "w"), indent=2)
import os; os.replace(out + ".tmp", out)
print("json:", out)
PY
