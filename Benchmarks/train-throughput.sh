#!/usr/bin/env bash
# Training throughput benchmark (not a test): in one run, on the same data,
#   - single-thread sgemm peak of this machine's OpenBLAS (the ceiling),
#   - cortado-train samples/s for the Fashion-MNIST MLP at batch 64 and 256 per rank on 1 and 2
#     ranks, the 2-rank / 1-rank ratio, and each rank's step FLOP rate against the sgemm peak.
# Prints a table and writes JSON (default runs/bench/throughput.json).
#
# usage: Benchmarks/train-throughput.sh [EPOCHS] [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
OUT=${2:-runs/bench/throughput.json}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

bash cluster/install-deps.sh
swift build -c release >/dev/null
BIN=.build/release
[ -f data/fashion-mnist/manifest.json ] || $BIN/cortado prepare fashion-mnist --out data/fashion-mnist --shards 2 >/dev/null
mkdir -p "$(dirname "$OUT")"

peak=$($BIN/cortado bench sgemm --size 1024 --threads 1 --seconds 2 --json)
peak_small=$($BIN/cortado bench sgemm --m 256 --n 256 --k 784 --threads 1 --seconds 2 --json)

results=()
for batch in 64 256; do
  for np in 1 2; do
    line=$(mpirun -np "$np" --bind-to core $BIN/cortado-train jobs/fashion-mlp.yaml --json --overwrite \
      --run-dir "runs/bench/np$np-b$batch" --set batch_size=$batch --set epochs=$EPOCHS \
      --set threads=1 --set checkpoint.every_steps=0 --set emit=[] | tail -n 1)
    results+=("{\"ranks\": $np, \"batch_per_rank\": $batch, \"summary\": $line}")
  done
done

python3 - "$OUT" "$peak" "$peak_small" "${results[@]}" <<'PY'
import json, platform, sys, datetime
out, peak, peak_small = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
runs = [json.loads(r) for r in sys.argv[4:]]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
rows = []
for r in runs:
    s = r["summary"]
    per_rank_gflops = s["samples_per_sec"] / r["ranks"] * s["train_flops_per_sample"] / 1e9
    base = next(x["summary"]["samples_per_sec"] for x in runs if x["ranks"] == 1 and x["batch_per_rank"] == r["batch_per_rank"])
    rows.append({"ranks": r["ranks"], "batch_per_rank": r["batch_per_rank"], "samples_per_sec": round(s["samples_per_sec"]),
                 "speedup_vs_1_rank": round(s["samples_per_sec"] / base, 3), "gflops_per_rank": round(per_rank_gflops, 1),
                 "fraction_of_sgemm_peak": round(per_rank_gflops / peak["gflops"], 3),
                 "val_accuracy": s["validation"]["accuracy"], "peak_rss_mib": round(s["peak_rss_mib_max"])})
print(f"{datetime.date.today()}  {cpu}  sgemm 1 thread: {peak['gflops']} GFLOP/s (1024^3), {peak_small['gflops']} (256x256x784)")
print(f"{'ranks':>5} {'batch/rank':>10} {'samples/s':>10} {'vs 1 rank':>9} {'GFLOP/s/rank':>12} {'of peak':>8} {'val acc':>8} {'RSS MiB':>8}")
for r in rows:
    print(f"{r['ranks']:>5} {r['batch_per_rank']:>10} {r['samples_per_sec']:>10} {r['speedup_vs_1_rank']:>9.2f} "
          f"{r['gflops_per_rank']:>12.1f} {r['fraction_of_sgemm_peak']:>8.1%} {r['val_accuracy']:>8.4f} {r['peak_rss_mib']:>8}")
json.dump({"date": str(datetime.date.today()), "cpu": cpu, "sgemm_peak_1thread": peak, "sgemm_mlp_shape": peak_small,
           "results": rows}, open(out, "w"), indent=1)
print("wrote " + out)
PY
