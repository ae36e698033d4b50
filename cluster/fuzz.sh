#!/usr/bin/env bash
# Fuzz the parsers of user-supplied files with libFuzzer + AddressSanitizer:
#   model (.cmodel), manifest (manifest.json), spec (job YAML), checkpoint (HDF5 behind its
#   whole-file checksum), and checkpoint-body (mutated HDF5 given a valid checksum, so libhdf5
#   itself is fuzzed: it finds libhdf5 1.10's own bugs, hence not in the default list), and
#   infer-request (the server's Open Inference Protocol JSON → tensors parser and decoders).
# Seeds are real files from the repository and a small training run; findings (crash-*,
# leak-*, timeout-*) land in runs/fuzz/TARGET/ and the script fails if there are any.
#
# usage: cluster/fuzz.sh [RUNS=10000000] [MAX_SECONDS=1800] [TARGETS="model manifest spec checkpoint"]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10000000}
MAX_SECONDS=${2:-1800}
TARGETS=${3:-"model manifest spec checkpoint infer-request"}
bash cluster/install-deps.sh >/dev/null
# libFuzzer instrumentation + AddressSanitizer. SwiftPM gives the executable its own main
# symbol, so libFuzzer's main is never linked; ours calls LLVMFuzzerRunDriver.
swift build -c release --product cortado-fuzz --scratch-path .build/fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
  -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld 2>&1 | tail -1    # gold crashes on this link
FUZZ=.build/fuzz/release/cortado-fuzz
swift build -c release >/dev/null
BIN=.build/release
OUT=runs/fuzz
mkdir -p $OUT/seed-run
# Seeds: a real model, manifest, job specs and checkpoint.
if [ ! -f $OUT/seed-run/data/manifest.json ]; then
  $BIN/cortado prepare fashion-mnist --out $OUT/seed-run/data --limit 600 --validation 100 >/dev/null
  $BIN/cortado-train jobs/fashion-mlp.yaml --run-dir $OUT/seed-run/run --overwrite --set data=$OUT/seed-run/data/manifest.json \
    --set epochs=1 --set 'model.layers=[{type: dense, units: 8}, {type: relu}, {type: dense, units: 10}]' >/dev/null
fi
status=0
for t in $TARGETS; do
  mkdir -p $OUT/$t/corpus
  case $t in
    model) cp $OUT/seed-run/run/model-*.cmodel $OUT/$t/corpus/ ;;
    manifest) cp $OUT/seed-run/data/manifest.json $OUT/$t/corpus/ ;;
    spec) cp jobs/*.yaml $OUT/$t/corpus/ ;;
    checkpoint|checkpoint-body) $BIN/cortado-fuzz seed-checkpoint $OUT/$t/corpus/seed.h5 >/dev/null ;;
    infer-request)
      echo '{"id":"a","inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}' > $OUT/$t/corpus/tensor.json
      echo '{"inputs":[{"name":"input","shape":[1,1,2,2],"datatype":"FP64","data":[[[[0.5,1e-3],[2,"NaN"]]]]}],"outputs":[{"name":"class"}]}' > $OUT/$t/corpus/nested.json
      echo '{"id":"c","inputs":[{"name":"age","shape":[2],"datatype":"FP64","data":[31,null]},{"name":"color","shape":[2,1],"datatype":"BYTES","data":["red","NA"]}],"parameters":{"top_k":3}}' > $OUT/$t/corpus/columns.json
      # Escapes, skipped parameters, every number form the reader takes apart.
      printf '%s\n' '{"id":"\u00e9\"\ud83d\ude00","parameters":{"top_k":"NaN","p":{"a":[1,true,null]}},"outputs":[{"name":"class","parameters":{"binary_data":false}}],"inputs":[{"name":"input","shape":[1,4],"datatype":"INT64","parameters":{},"data":[[-0,1e2,25E-1,-12345678901234567890]]}]}' > $OUT/$t/corpus/escapes.json
      # Binary tensor data after the JSON: FP32 [1, 4], then BYTES ["red", "NA"].
      { printf '%s' '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},{"name":"color","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":13}}],"parameters":{"binary_data_output":true}}'
        printf '\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40\x03\x00\x00\x00red\x02\x00\x00\x00NA'; } > $OUT/$t/corpus/binary.bin ;;
  esac
  # The model harness strips nothing: the fuzzer's input is the file minus its checksum.
  if [ "$t" = model ]; then for f in $OUT/$t/corpus/*.cmodel; do head -c -32 "$f" > "$f.body" && mv "$f.body" "$f"; done; fi
  echo "== fuzzing $t: up to $RUNS runs or $MAX_SECONDS s"
  # allocator_may_return_null: libhdf5 asks malloc for absurd sizes on malformed files (found
  # by the checkpoint harness) and handles the NULL that glibc returns; ASan would abort.
  ( cd $OUT/$t && CORTADO_FUZZ_TARGET=$t ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$OLDPWD/$FUZZ" corpus \
      -runs=$RUNS -max_total_time=$MAX_SECONDS -max_len=$(case $t in checkpoint*) echo 8192 ;; *) echo 65536 ;; esac) -timeout=10 -print_final_stats=1 2> log.txt ) || status=1
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|ERROR|Done" $OUT/$t/log.txt | sed "s/^/  $t: /" || true
  ls $OUT/$t/crash-* $OUT/$t/timeout-* 2>/dev/null && status=1
done
exit $status
