#!/usr/bin/env bash
# Runs mpirun on the virtual cluster: from inside node1, with the launch agent for the other
# hosts, TCP only on the cluster's subnet, and TCP keepalive short enough that a host whose
# link is cut is noticed in seconds (Open MPI's default waits ≈ 8 minutes).
#   cluster/vcluster-run.sh -np 2 --map-by node .build/release/cortado-train JOB.yaml …
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec ip netns exec cortado-node1 unshare --uts /bin/sh -c 'hostname node1; shift; exec "$@"' sh -- \
  mpirun --hostfile "$ROOT/hostfiles/vcluster" --mca plm_rsh_agent "$ROOT/cluster/vcluster-agent.sh" \
    --mca oob_tcp_if_include 10.77.0.0/24 --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
    --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 \
    --mca odls_base_sigkill_timeout 1 --bind-to none "$@"
