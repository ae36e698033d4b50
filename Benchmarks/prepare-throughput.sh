#!/usr/bin/env bash
# CSV preparation benchmark (not a test): in one run, on the same generated file (mixed numeric
# and categorical columns, ~2 % missing values), `cortado prepare csv` on 1 and 2 ranks and with
# duplicate removal off, against pandas (read_csv + dedup + impute + standardize + one-hot +
# write HDF5 with h5py). MB/s of CSV and peak RSS of each; a second, 4× smaller file shows
# which peak RSS grows with the input. Prints a table and writes JSON.
#
# usage: Benchmarks/prepare-throughput.sh [SIZE_MB (default 1024)] [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
OUT=${2:-runs/bench/prepare.json}
WORK=${WORK:-/tmp/cortado-prepare-bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash cluster/install-deps.sh
python3 -c "import pandas" 2>/dev/null || python3 -m pip install -q pandas
swift build -c release >/dev/null
BIN=$PWD/.build/release
mkdir -p "$WORK" "$(dirname "$OUT")"
SMALL=$((SIZE / 4))
[ -f "$WORK/big.csv" ] && [ "$(stat -c %s "$WORK/big.csv")" -ge $((SIZE * 1000000)) ] || python3 Benchmarks/make_csv.py "$WORK/big.csv" "$SIZE"
[ -f "$WORK/small.csv" ] || python3 Benchmarks/make_csv.py "$WORK/small.csv" "$SMALL"

# run NAME FILE CMD…: wall seconds and peak RSS (max over processes) via GNU time.
results=()
run() {
  local name=$1 file=$2; shift 2
  rm -rf "$WORK/out-$name"
  local log="$WORK/$name.time"
  /usr/bin/time -f "%e %M" -o "$log" "$@" >/dev/null
  read -r secs kb < "$log"
  local mb; mb=$(stat -c %s "$file")
  results+=("{\"name\": \"$name\", \"file_mb\": $((mb / 1000000)), \"seconds\": $secs, \"peak_rss_kb\": $kb}")
  echo "$name: ${secs}s, peak RSS $((kb / 1024)) MiB" >&2
}
# With mpirun, GNU time sees mpirun itself; each rank reports its own peak through /proc.
for f in big small; do
  run "cortado-1rank-$f" "$WORK/$f.csv" $BIN/cortado prepare csv "$WORK/$f.csv" --out "$WORK/out-c1-$f" --label label --shards 4 --overwrite
  run "cortado-1rank-keepdup-$f" "$WORK/$f.csv" $BIN/cortado prepare csv "$WORK/$f.csv" --out "$WORK/out-c1k-$f" --label label --shards 4 --overwrite --keep-duplicates
  run "pandas-$f" "$WORK/$f.csv" python3 Benchmarks/pandas_prepare.py "$WORK/$f.csv" "$WORK/out-pd-$f" label
done
run "cortado-2ranks-big" "$WORK/big.csv" mpirun -np 2 --bind-to none /usr/bin/time -f "rank %M" -a -o "$WORK/ranks.rss" \
  $BIN/cortado prepare csv "$WORK/big.csv" --out "$WORK/out-c2-big" --label label --shards 4 --overwrite
rank_kb=$(grep -o "rank [0-9]*" "$WORK/ranks.rss" | awk '{print $2}' | sort -n | tail -1); rm -f "$WORK/ranks.rss"

python3 - "$OUT" "$rank_kb" "${results[@]}" <<'PY'
import json, sys, datetime
out, rank_kb, rows = sys.argv[1], int(sys.argv[2]), [json.loads(r) for r in sys.argv[3:]]
for r in rows:
    if r["name"] == "cortado-2ranks-big":
        r["peak_rss_kb"] = rank_kb  # per rank, not mpirun's
    r["mb_per_s"] = round(r["file_mb"] / r["seconds"], 1)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"{datetime.date.today()}  {cpu}")
print(f"{'run':<28} {'CSV MB':>7} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13}")
for r in rows:
    print(f"{r['name']:<28} {r['file_mb']:>7} {r['seconds']:>8} {r['mb_per_s']:>7} {r['peak_rss_kb'] // 1024:>13}")
json.dump({"date": str(datetime.date.today()), "cpu": cpu, "results": rows}, open(out, "w"), indent=1)
print("wrote " + out)
PY
