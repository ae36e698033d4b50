#!/usr/bin/env bash
# Embedding-gradient exchange benchmark (not a test): the MF recommender on 2 ranks with the
# embedding tables' gradients exchanged densely (one allreduce of the whole arena) or sparsely
# (touched rows allgathered), for a MovieLens-100k-sized catalogue (1 682 items) and a large
# one (200 000 items, same 100 000 ratings). Same data, same steps, same results (a test checks
# sparse == dense); only the communication differs. Prints a table and writes JSON.
#
# usage: Benchmarks/sparse-exchange.sh [EPOCHS] [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-2}
OUT=${2:-runs/bench/sparse-exchange.json}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash cluster/install-deps.sh
swift build -c release >/dev/null
BIN=.build/release
mkdir -p runs/bench/ratings "$(dirname "$OUT")"
results=()
for items in 1682 200000; do
  d=runs/bench/ratings/items-$items
  if [ ! -f "$d/prepared/manifest.json" ]; then
    mkdir -p "$d"
    $BIN/cortado prepare synthetic-ratings --items "$items" --out "$d/u.data" >/dev/null
    $BIN/cortado prepare csv "$d/u.data" --no-header --delimiter tab --label c2 --task regression \
      --leave-last-out c0,c3 --schema jobs/ratings-schema.yaml --out "$d/prepared" --overwrite >/dev/null
  fi
  for mode in dense sparse; do
    line=$(mpirun -np 2 --bind-to core $BIN/cortado-train jobs/recsys-mf.yaml --json --overwrite \
      --run-dir "runs/bench/exchange-$items-$mode" --set "data=$d/prepared/manifest.json" --set epochs=$EPOCHS \
      --set model.exchange=$mode --set threads=1 --set emit=[] --set early_stopping.patience=100 | tail -n 1)
    results+=("{\"items\": $items, \"exchange\": \"$mode\", \"summary\": $line}")
  done
done
python3 - "$OUT" "${results[@]}" <<'PY'
import json, sys, datetime
out, runs = sys.argv[1], [json.loads(r) for r in sys.argv[2:]]
print(f"{'items':>8} {'exchange':>8} {'samples/s':>10} {'exchange ms/step':>16} {'compute':>8} {'update':>8} {'test RMSE':>9} {'RSS MiB':>8}")
for r in runs:
    s = r["summary"]
    r["samples_per_sec"] = s["samples_per_sec"]
    ms = s["step_ms"]
    print(f"{r['items']:>8} {r['exchange']:>8} {s['samples_per_sec']:>10.0f} {ms['exchange']:>16.3f} {ms['compute']:>8.3f} {ms['update']:>8.3f} {s['test']['fp32_rmse']:>9.4f} {s['peak_rss_mib_max']:>8.0f}")
for items in sorted({r["items"] for r in runs}):
    d = {r["exchange"]: r["summary"] for r in runs if r["items"] == items}
    print(f"items {items}: exchange time dense / sparse = {d['dense']['step_ms']['exchange'] / d['sparse']['step_ms']['exchange']:.1f}x, "
          f"samples/s sparse / dense = {d['sparse']['samples_per_sec'] / d['dense']['samples_per_sec']:.2f}x")
json.dump({"date": datetime.date.today().isoformat(), "runs": runs}, open(out, "w"), indent=1)
print("wrote", out)
PY
