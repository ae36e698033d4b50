#!/usr/bin/env bash
# Stops what cluster/slurm-up.sh started, in both modes (slurmd, slurmctld, munged), and removes
# its state and the head namespace. Idempotent. Leaves the installed packages alone.
set -uo pipefail
DIR=${CORTADO_SLURM_DIR:-/tmp/cortado-slurm}
VC=/tmp/cortado-slurm-vc
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# stop PIDFILE…: TERM each daemon, wait (≤ 5 s) until all are gone, then KILL what is left.
stop() {
  local pids=()
  for f in "$@"; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
  [ ${#pids[@]} -eq 0 ] && return
  $SUDO kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 50); do $SUDO kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
  $SUDO kill -9 "${pids[@]}" 2>/dev/null   # one stuck (e.g. retrying a dead munge) goes anyway
}
# The one-node Slurm.
if [ -d "$DIR" ]; then
  [ -f "$DIR/slurmctld.pid" ] && scancel --user="$(id -un)" 2>/dev/null
  stop "$DIR/slurmd.pid" "$DIR/slurmctld.pid"
  $SUDO rm -rf "$DIR"
fi
# The multi-node Slurm: its jobs, daemons (pid files per node), the head namespace.
if [ -d "$VC" ]; then
  [ -f "$VC/slurmctld.pid" ] && "$(dirname "$0")/slurm-vc.sh" scancel --user="$(id -un)" 2>/dev/null
  stop "$VC"/slurmd-*.pid "$VC/slurmctld.pid"
  if $SUDO ip netns list | grep -qw cortado-head; then
    $SUDO ip netns pids cortado-head | xargs -r $SUDO kill -9 2>/dev/null
    $SUDO ip netns del cortado-head
  fi
  $SUDO ip link del veth-head 2>/dev/null
  $SUDO rm -rf "$VC" /etc/netns/cortado-head
fi
if [ -f /tmp/cortado-munge/started-munged ]; then
  $SUDO pkill -x munged
  for _ in $(seq 50); do pgrep -x munged >/dev/null || break; sleep 0.1; done
fi
$SUDO rm -rf /tmp/cortado-munge
echo "slurm-down: stopped" >&2
