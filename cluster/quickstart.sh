#!/usr/bin/env bash
# The main job, from nothing: install dependencies, build (release), prepare Fashion-MNIST,
# train the MLP on 2 local ranks with mpirun, emit fp32 + int8 models, score the test set with
# cortado-infer, push the run to a local registry (./registry) and write its HTML report, print
# the accuracies, both paths and the wall time.
#
# usage: bash cluster/quickstart.sh [extra cortado-train args, e.g. --set epochs=5]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash cluster/install-deps.sh
echo "== build (release)"
swift build -c release 2>&1 | tail -n 1
BIN=.build/release

echo "== prepare Fashion-MNIST"
$BIN/cortado prepare fashion-mnist --out data/fashion-mnist --shards 2 | tail -n 1

echo "== train: mpirun -np 2 cortado-train jobs/fashion-mlp.yaml"
# Root needs Open MPI's consent; a normal user does not.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpirun -np 2 --hostfile hostfiles/localhost $BIN/cortado-train jobs/fashion-mlp.yaml \
  --run-dir runs/fashion-mlp --overwrite "$@"

echo "== infer: cortado-infer on data/fashion-mnist/test.h5"
for p in fp32 int8; do
  $BIN/cortado-infer runs/fashion-mlp/model-$p.cmodel --input data/fashion-mnist/test.h5 \
    --out runs/fashion-mlp/predictions-$p.csv | sed "s/^/[$p] /"
done
ls -l runs/fashion-mlp/model-*.cmodel | awk '{print "model file " $NF ": " $5 " bytes"}'

echo "== registry: push the run to ./registry, write its report"
# A new version each time (versions are immutable); champion follows the newest push here.
$BIN/cortado registry push runs/fashion-mlp --name fashion-mlp --registry registry --alias champion \
  --reason quickstart | tail -n 1
$BIN/cortado report registry/fashion-mlp --out runs/fashion-mlp/report.html
echo "registry: $(pwd)/registry/fashion-mlp (use registry://fashion-mlp@champion with --registry registry)"
echo "report:   $(pwd)/runs/fashion-mlp/report.html"
echo "== done in $(( $(date +%s) - start )) s"
