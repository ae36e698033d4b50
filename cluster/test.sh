#!/usr/bin/env bash
# The test suite, from nothing: install dependencies, then build and run every test (unit,
# gradient checks, numpy golden values, real mpirun -np 2/3 runs, h5py/h5dump interop, job
# scripts on a real Slurm that the tests start with cluster/slurm-up.sh) in release mode, the
# build users run. .ci/run calls exactly this. Slurm is stopped again at the end if the tests
# started it.
#
#   bash cluster/test.sh           everything (what CI runs)
#   bash cluster/test.sh --fast    the unit lane only (CortadoUnitTests: no mpirun, no Slurm)
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
[ "${1:-}" = "--fast" ] && fast=1
bash cluster/install-deps.sh
# The package graph only points down (tiers in cluster/check-graph.py); fails on an upward edge.
python3 cluster/check-graph.py
# The layout (.swift-format: 120 columns) is checked; cluster/format.sh rewrites it.
bash cluster/format.sh --check
# mpirun as root (CI runs as root) needs Open MPI's consent.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
swift build -c release --build-tests
if [ "$fast" -eq 1 ]; then
  exec swift test -c release --skip-build --disable-swift-testing --filter 'CortadoUnitTests\.'
fi
# Tear down at the end what the tests stand up (a Slurm or virtual cluster already running
# before is left alone).
cleanup=()
{ scontrol ping 2>/dev/null | grep -q "is UP" && [ -d /tmp/cortado-slurm-vc ]; } || cleanup+=("bash cluster/slurm-down.sh")
ip netns list 2>/dev/null | grep -q cortado-node || cleanup+=("bash cluster/vcluster-down.sh")
teardown() { for c in "${cleanup[@]}"; do $c >/dev/null 2>&1 || true; done; cleanup=(); }
trap teardown EXIT
# Stand them up here, not from inside the test process: daemons started under XCTest's
# Process left its waitUntilExit hanging (Foundation on Linux missed the child's exit).
bash cluster/slurm-up.sh
bash cluster/vcluster-up.sh 2
# The multi-node Slurm, on the virtual cluster's hosts. CI runs saw this exit 1 with no message:
# it reruns vcluster-up.sh, whose reachability check could not bind its port (TIME_WAIT from
# the run just above) and whose error went to /dev/null; both are fixed. A retry with a shell
# trace stays, so anything else shows the failing command.
bash cluster/slurm-up.sh 2 || { echo "test.sh: the 2-node Slurm did not start; retrying with a trace" >&2; sleep 2; bash -x cluster/slurm-up.sh 2; }
started=${#cleanup[@]}
log=$(mktemp)
set +e
swift test -c release --skip-build --disable-swift-testing 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line: "N passed, N failed", from XCTest's per-test lines.
passed=$(grep -cE "^Test Case .* passed" "$log" || true)
failed=$(grep -cE "^Test Case .* failed" "$log" || true)
rm -f "$log"
echo "tests: $passed passed, $failed failed"
# Teardown test: what the tests stood up is gone afterwards — no daemon, namespace or link.
if [ "$started" -gt 0 ]; then
  teardown
  if left=$(bash cluster/check-clean.sh); then echo "teardown: nothing left running"; else echo "teardown FAILED: $left"; status=1; fi
fi
exit "$status"
