#!/usr/bin/env bash
# The README's compression table (not a test): `cortado compress` on the four trained
# Fashion-MNIST models — the MLP and the CNN, each dense and pruned to 90 % during training
# (jobs/fashion-{mlp,cnn}[-pruned].yaml) — with the recipes a user compares, 1 thread. Each row:
# file size, parameters, non-zeros, test accuracy, batch-1 p50, batch-1024 rows/s. JSON per
# model under runs/bench/compress/.
#
# usage: Benchmarks/compress-table.sh   (after training the four jobs)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
swift build -c release >/dev/null
OUT=runs/bench/compress
mkdir -p "$OUT"
for m in fashion-mlp fashion-cnn fashion-mlp-pruned fashion-cnn-pruned; do
  [ -f "runs/$m/model-fp32.cmodel" ] || { echo "compress-table: runs/$m/model-fp32.cmodel missing (train jobs/$m.yaml)" >&2; exit 2; }
  case $m in
    *-pruned) recipes=(fp32 prune0.9+fp16 prune0.9+int8) ;;
    *) recipes=(fp32 fp16 bf16 int8 int8-static int8-static99.99 prune0.9+int8) ;;
  esac
  args=(); for r in "${recipes[@]}"; do args+=(--recipe "$r"); done
  echo "== $m"
  $BIN/cortado compress "runs/$m/model-fp32.cmodel" "${args[@]}" --data data/fashion-mnist/manifest.json \
    --out "$OUT/$m" --threads 1 --json "$OUT/$m.json" | sed -n '/^variant/,$p'
done
