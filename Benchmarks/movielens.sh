#!/usr/bin/env bash
# The recommenders on the real MovieLens-100k (benchmark, not a test): `cortado prepare
# movielens` from the RecBole wheel (leave-last-out by time, ties in file order), then each
# shipped job on 2 ranks for SEEDS seeds — NCF and implicit MF: test HR@10 / NDCG@10 by full
# ranking, next to the popularity ranker; explicit MF: test RMSE next to the global-mean and
# user + item bias baselines (both fitted on the training split). Prints mean ± sd over seeds
# (sample sd, n − 1) and the mean training wall time, and writes JSON.
#
# usage: [JOBS="recsys-mf ..."] Benchmarks/movielens.sh [SEEDS] [OUT.json]
# (JOBS: a subset of the three jobs; EXTRA: more cortado-train arguments, e.g. "--set model.dot=false")
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-5}
OUT=${2:-runs/bench/movielens.json}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash cluster/install-deps.sh
swift build -c release >/dev/null
BIN=.build/release
DATA=runs/bench/ml-100k
mkdir -p "$(dirname "$OUT")"
[ -f "$DATA/manifest.json" ] || $BIN/cortado prepare movielens --out "$DATA"
results=()
for job in ${JOBS:-recsys-ncf recsys-mf-implicit recsys-mf}; do
  for seed in $(seq 1 "$SEEDS"); do
    t0=$(date +%s.%N)
    line=$(mpirun -np 2 --bind-to core $BIN/cortado-train "jobs/$job.yaml" --json --overwrite \
      --run-dir "runs/bench/movielens/$job-$seed" --set "data=$DATA/manifest.json" --set "seed=$seed" \
      --set threads=1 --set 'emit=[]' ${EXTRA:-} | tail -n 1)
    t1=$(date +%s.%N)
    results+=("{\"job\": \"$job\", \"seed\": $seed, \"process_s\": $(echo "$t1 - $t0" | bc), \"summary\": $line}")
  done
done
python3 - "$OUT" "$(lscpu | grep 'Model name' | sed 's/.*: *//')" "${results[@]}" <<'PY'
import json, sys, datetime, statistics as st
out, cpu, runs = sys.argv[1], sys.argv[2], [json.loads(r) for r in sys.argv[3:]]
def ms(xs):
    return f"{st.mean(xs):.4f} ± {st.stdev(xs) if len(xs) > 1 else 0:.4f}"
print(f"CPU: {cpu}; {len(runs)} runs on 2 ranks")
for job in dict.fromkeys(r["job"] for r in runs):
    rs = [r for r in runs if r["job"] == job]
    t = [r["summary"]["test"] for r in rs]
    wall = st.mean(r["summary"]["wall_sec"] for r in rs)
    steps = st.mean(r["summary"]["steps"] for r in rs)
    seeds = ",".join(str(r["seed"]) for r in rs)
    if "fp32_rmse" in t[0]:
        print(f"{job:20} seeds {seeds}: test RMSE {ms([x['fp32_rmse'] for x in t])}; global mean {t[0]['global_mean_rmse']:.4f}, "
              f"user+item bias {t[0]['bias_rmse']:.4f}; {steps:.0f} steps, training wall {wall:.1f} s")
    else:
        print(f"{job:20} seeds {seeds}: test HR@10 {ms([x['fp32_hr@10'] for x in t])}, NDCG@10 {ms([x['fp32_ndcg@10'] for x in t])}; "
              f"popularity HR@10 {t[0]['popularity_hr@10']:.4f}, NDCG@10 {t[0]['popularity_ndcg@10']:.4f}; "
              f"{steps:.0f} steps, training wall {wall:.1f} s")
    key = "fp32_rmse" if "fp32_rmse" in t[0] else "fp32_hr@10"
    print(f"{'':20} per seed {key}: " + ", ".join(f"{x[key]:.4f}" for x in t)
          + f"; unknown test rows {int(t[0]['unknown_rows'])}")
json.dump({"date": datetime.date.today().isoformat(), "cpu": cpu, "runs": runs}, open(out, "w"), indent=1)
print("wrote", out)
PY
