#!/usr/bin/env bash
# The concurrency-1 half of Benchmarks/serve.sh, quick and A/B (not a test): one or more
# `cortado-infer` binaries (or wrapper scripts that set its environment) serve the same models side by side, and wrk -c1 alternates between
# them for ROUNDS rounds, so both see the same load on a shared machine. Per round and binary:
# p50 of the empty endpoint (GET /v2/health/live), of the MLP's body sent to an unknown model
# (404 before the body is read: receiving the body and answering, no parse or model), of the
# MLP int8 / fp32 and CNN int8 infer requests; then the median over rounds. The goal compares MLP p50 with 2 × `--bench` batch-1
# p50 + the empty endpoint's p50.
#
# usage: Benchmarks/serve-c1.sh MLP_RUN_DIR CNN_RUN_DIR SECONDS ROUNDS BIN_A [BIN_B …]
set -euo pipefail
cd "$(dirname "$0")/.."
MLP=$1 CNN=$2 SECS=$3 ROUNDS=$4
BINS=("${@:5}")
TMP=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"' EXIT
source Benchmarks/serve-common.sh
for i in "${!BINS[@]}"; do
  "${BINS[$i]}" serve --models "$TMP/models" --port $((18090 + i)) --cores "$(nproc)" > "$TMP/serve$i.out" 2> "$TMP/serve$i.err" &
  PIDS+=($!)
  wait_port $((18090 + i))
done
p50() { # URL [LUA] -> p50 in ms
  wrk -t1 -c1 -d"${SECS}s" --latency ${2:+-s "$2"} "$1" |
    python3 -c "
import re, sys
m = re.search(r'^\s*50%\s+([\d.]+)(us|ms|s)\s*$', sys.stdin.read(), re.M)
v = float(m.group(1)); print(f'{v / 1000 if m.group(2) == \"us\" else v * 1000 if m.group(2) == \"s\" else v:.3f}')"
}
echo "CPU: $(lscpu | grep 'Model name' | sed 's/Model name: *//'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg); $SECS s per cell"
for r in $(seq 1 "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    u="http://127.0.0.1:$((18090 + i))"
    echo "$r $i $(p50 $u/v2/health/live) $(p50 $u/v2/models/none/infer $TMP/mlp.lua)" \
      "$(p50 $u/v2/models/mlp-int8/infer $TMP/mlp.lua) $(p50 $u/v2/models/mlp-fp32/infer $TMP/mlp.lua)" \
      "$(p50 $u/v2/models/cnn-int8/infer $TMP/cnn.lua)"
  done
done | tee "$TMP/rounds.txt"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$TMP/rounds.txt" "${BINS[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("| binary | empty GET p50 ms | MLP body, 404 unread p50 ms | MLP int8 p50 ms | MLP fp32 p50 ms | CNN int8 p50 ms | rounds |")
print("|---|---|---|---|---|---|---|")
for i, b in enumerate(sys.argv[2:]):
    mine = [list(map(float, r[2:])) for r in rows if r[1] == str(i)]
    med = [statistics.median(c) for c in zip(*mine)]
    print(f"| {b} | " + " | ".join(f"{v:.3f}" for v in med) + f" | {len(mine)} |")
PY
