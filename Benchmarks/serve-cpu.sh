#!/usr/bin/env bash
# Server CPU per request at concurrency 1, the steadier figure behind serve-c1.sh's p50s (not a
# test): one `cortado-infer serve` on the MLP and CNN runs' models, wrk -t1 -c1 on each endpoint
# for SECONDS, ROUNDS times; per cell the server's utime + stime (/proc/PID/stat) over the
# requests wrk completed, and its p50. Endpoints: the empty GET, the MLP's 7.7 KB body to an
# unknown model (404 before the body is read), and the MLP int8 / fp32 infer requests (int8 also
# with the row as binary tensor data).
#
# usage: Benchmarks/serve-cpu.sh MLP_RUN_DIR CNN_RUN_DIR [SECONDS] [ROUNDS] [BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
MLP=$1 CNN=$2 SECS=${3:-3} ROUNDS=${4:-3} BIN=${5:-.build/release/cortado-infer}
TMP=$(mktemp -d)
source Benchmarks/serve-common.sh
"$BIN" serve --models "$TMP/models" --port 18095 --cores "$(nproc)" > "$TMP/serve.out" 2> "$TMP/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
wait_port 18095
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
echo "CPU: $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg); $SECS s per cell"
echo "| round | endpoint | p50 | server CPU µs / request |"
echo "|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  for cell in "GET-empty /v2/health/live -" "POST-404-unread /v2/models/none/infer mlp.lua" \
    "MLP-int8 /v2/models/mlp-int8/infer mlp.lua" "MLP-int8-binary /v2/models/mlp-int8/infer mlp-bin.lua" \
    "MLP-fp32 /v2/models/mlp-fp32/infer mlp.lua"; do
    set -- $cell
    lua=""; [ "$3" != - ] && lua="$TMP/$3"
    c0=$(cpu)
    out=$(wrk -t1 -c1 -d"${SECS}s" --latency ${lua:+-s "$lua"} "http://127.0.0.1:18095$2")
    c1=$(cpu)
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    echo "| $r | $1 | $p50 | $(python3 -c "print(f'{($c1 - $c0) / $TICK * 1e6 / $n:.1f}')") |"
  done
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
