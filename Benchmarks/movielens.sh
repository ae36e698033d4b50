#!/usr/bin/env bash
# The recommenders on the real MovieLens-100k (benchmark, not a test): `cortado prepare
# movielens` from the RecBole wheel (leave-last-out by time, ties in file order), then each
# shipped job on 2 ranks for SEEDS seeds — NCF and implicit MF: test HR@10 / NDCG@10 by full
# ranking, next to the popularity ranker; explicit MF: test RMSE next to the global-mean and
# user + item bias baselines (fitted on the same training rows). Prints mean ± sd over seeds
# (sample sd, n − 1) and the mean training wall time, and writes JSON.
#
# Per seed, as a user would run them (docs/training.md#recommenders, docs/data.md#movielens-100k):
# - recsys-ncf starts from the same seed's implicit MF (init_from: NeuMF's pretraining); the
#   implicit MF runs first when JOBS leaves it out, and its time counts in NCF's.
# - recsys-mf is tuned on validation (early stopping → best_epoch), then fitted again on the data
#   prepared with --no-validation (each user's second-latest rating back in training) for that
#   many epochs; the test RMSE of both is printed, the final fit's is the result.
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
DATA=runs/bench/ml-100k FINAL=runs/bench/ml-100k-no-validation RUNS=runs/bench/movielens
mkdir -p "$(dirname "$OUT")"
[ -f "$DATA/manifest.json" ] || $BIN/cortado prepare movielens --out "$DATA"
[ -f "$FINAL/manifest.json" ] || $BIN/cortado prepare movielens --no-validation --out "$FINAL"

# train JOB RUN SEED [ARGS…]: one 2-rank run; prints its summary line.
train() {
  local job=$1 run=$2 seed=$3
  shift 3
  mpirun -np 2 --bind-to core $BIN/cortado-train "jobs/$job.yaml" --json --overwrite --run-dir "$RUNS/$run" \
    --set "data=$DATA/manifest.json" --set "seed=$seed" --set threads=1 --set 'emit=[]' "$@" ${EXTRA:-} | tail -n 1
}
results=()
for seed in $(seq 1 "$SEEDS"); do
  for job in ${JOBS:-recsys-mf-implicit recsys-ncf recsys-mf}; do
    t0=$(date +%s.%N)
    extra_json=""
    case $job in
      recsys-mf-implicit)
        line=$(train $job "$job-$seed" "$seed" --set 'emit=[fp32]') ;;
      recsys-ncf)
        pre="$RUNS/recsys-mf-implicit-$seed/model-fp32.cmodel"
        if [ ! -f "$pre" ]; then
          pre_line=$(train recsys-mf-implicit "recsys-mf-implicit-$seed" "$seed" --set 'emit=[fp32]')
          extra_json=", \"pretraining\": $pre_line"
        fi
        line=$(train $job "$job-$seed" "$seed" --set "init_from=$pre") ;;
      recsys-mf)
        tuned=$(train $job "$job-$seed-tuned" "$seed")
        epochs=$(echo "$tuned" | python3 -c 'import json,sys; print(json.load(sys.stdin)["best_epoch"])')
        line=$(train $job "$job-$seed" "$seed" --set "data=$FINAL/manifest.json" --set early_stopping=null \
          --set "epochs=$epochs")
        extra_json=", \"tuned\": $tuned, \"epochs\": $epochs" ;;
      *)
        line=$(train $job "$job-$seed" "$seed") ;;
    esac
    t1=$(date +%s.%N)
    results+=("{\"job\": \"$job\", \"seed\": $seed, \"process_s\": $(echo "$t1 - $t0" | bc), \"summary\": $line$extra_json}")
  done
done
python3 - "$OUT" "$(lscpu | grep 'Model name' | sed 's/.*: *//')" "${results[@]}" <<'PY'
import json, sys, datetime, statistics as st
out, cpu, runs = sys.argv[1], sys.argv[2], [json.loads(r) for r in sys.argv[3:]]
def ms(xs):
    return f"{st.mean(xs):.4f} ± {st.stdev(xs) if len(xs) > 1 else 0:.4f}"
print(f"CPU: {cpu}; {len(runs)} jobs on 2 ranks")
for job in dict.fromkeys(r["job"] for r in runs):
    rs = [r for r in runs if r["job"] == job]
    t = [r["summary"]["test"] for r in rs]
    # Wall time of everything the result needed: pretraining and tuning runs included.
    def wall(r):
        w = r["summary"]["wall_sec"] + sum(r[k]["wall_sec"] for k in ("pretraining", "tuned") if k in r)
        if job == "recsys-ncf" and "pretraining" not in r:  # the implicit MF ran as its own job
            w += sum(p["summary"]["wall_sec"] for p in runs if p["job"] == "recsys-mf-implicit" and p["seed"] == r["seed"])
        return w
    walls = [wall(r) for r in rs]
    steps = st.mean(r["summary"]["steps"] for r in rs)
    seeds = ",".join(str(r["seed"]) for r in rs)
    if "fp32_rmse" in t[0]:
        tuned = [r["tuned"]["test"] for r in rs if "tuned" in r]
        if tuned:
            print(f"{job:20} tuned on validation: test RMSE {ms([x['fp32_rmse'] for x in tuned])}; global mean "
                  f"{tuned[0]['global_mean_rmse']:.4f}, user+item bias {tuned[0]['bias_rmse']:.4f}; best epochs "
                  + ",".join(str(r["epochs"]) for r in rs))
        print(f"{job:20} seeds {seeds}: test RMSE {ms([x['fp32_rmse'] for x in t])}; global mean {t[0]['global_mean_rmse']:.4f}, "
              f"user+item bias {t[0]['bias_rmse']:.4f}; {steps:.0f} steps, training wall {st.mean(walls):.1f} s"
              + (" (tuning run + final fit)" if tuned else ""))
    else:
        pre = " (with the implicit MF it starts from)" if job == "recsys-ncf" else ""
        print(f"{job:20} seeds {seeds}: test HR@10 {ms([x['fp32_hr@10'] for x in t])}, NDCG@10 {ms([x['fp32_ndcg@10'] for x in t])}; "
              f"popularity HR@10 {t[0]['popularity_hr@10']:.4f}, NDCG@10 {t[0]['popularity_ndcg@10']:.4f}; "
              f"{steps:.0f} steps, training wall {st.mean(walls):.1f} s{pre}")
    key = "fp32_rmse" if "fp32_rmse" in t[0] else "fp32_hr@10"
    print(f"{'':20} per seed {key}: " + ", ".join(f"{x[key]:.4f}" for x in t)
          + f"; unknown test rows {int(t[0]['unknown_rows'])}")
json.dump({"date": datetime.date.today().isoformat(), "cpu": cpu, "runs": runs}, open(out, "w"), indent=1)
print("wrote", out)
PY
