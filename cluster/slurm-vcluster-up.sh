#!/usr/bin/env bash
# A multi-node Slurm on the virtual cluster (called by `cluster/slurm-up.sh N`; munge is up):
# one slurmd per namespace host node1..N and slurmctld in a `head` namespace at 10.77.0.10, so
# every Slurm message crosses the bridge like on a real cluster and cutting a host's link is a
# real node failure. Each daemon runs in its host's network namespace (nsenter: `ip netns exec`
# hides /sys/fs/cgroup and slurmd exits), in its own mount and UTS namespaces so that it has its
# hostname (Open MPI's PMIx needs distinct ones), that host's /etc/hosts, and its own TmpFS
# (a shared one makes `srun --mpi=pmix` fail with "File exists"). Idempotent.
#
# usage: cluster/slurm-vcluster-up.sh N     (client commands: cluster/slurm-vc.sh CMD …)
set -euo pipefail
N=${1:?usage: slurm-vcluster-up.sh N}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=/tmp/cortado-slurm-vc
CONF=/etc/slurm-vcluster/slurm.conf
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Any failing command is named (CI once saw this script exit 1 with no message: the reason was
# vcluster-up.sh's error, which went to /dev/null here).
trap 'echo "slurm-vcluster-up: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
bash "$ROOT/cluster/vcluster-up.sh" "$N"
vc() { "$ROOT/cluster/slurm-vc.sh" "$@"; }
if vc sinfo -h -o %D 2>/dev/null | grep -qx "$N" && ! vc sinfo -h -o %t 2>/dev/null | grep -qvE "idle|mix|alloc"; then
  echo "slurm-up: the $N-node Slurm is already running" >&2; exit 0
fi

# The head namespace: slurmctld's host, on the bridge like the nodes.
if ! $SUDO ip netns list | grep -qw cortado-head; then
  $SUDO ip netns add cortado-head
  $SUDO ip link add veth-head type veth peer name eth0 netns cortado-head
  $SUDO ip link set veth-head master cortado-br0 up
  $SUDO ip netns exec cortado-head ip addr add 10.77.0.10/24 dev eth0
  $SUDO ip netns exec cortado-head ip link set eth0 up
  $SUDO ip netns exec cortado-head ip link set lo up
fi
$SUDO mkdir -p /etc/netns/cortado-head
$SUDO cp /etc/netns/cortado-node1/hosts /etc/netns/cortado-head/hosts
grep -q " head$" /etc/netns/cortado-head/hosts || for f in /etc/netns/cortado-*/hosts; do echo "10.77.0.10 head" | $SUDO tee -a "$f" >/dev/null; done

$SUDO mkdir -p "$DIR"/{state,log} /etc/slurm-vcluster
CPUS=$(nproc); MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / N ))
{
  cat <<CONF
# Written by cortado cluster/slurm-vcluster-up.sh: $N nodes in network namespaces.
ClusterName=cortado-vc
SlurmctldHost=head(10.77.0.10)
$(grep -v "^#" "$ROOT/cluster/slurm-common.conf")
# A node that stops answering is DOWN after ~SlurmdTimeout, and its jobs are requeued.
SlurmdTimeout=10
MessageTimeout=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool-%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
TmpFS=$DIR/tmp
CONF
  for i in $(seq 1 "$N"); do echo "NodeName=node$i NodeAddr=10.77.0.$((10 + i)) CPUs=$CPUS RealMemory=$MEM State=UNKNOWN"; done
  echo "PartitionName=vc Nodes=node[1-$N] Default=YES MaxTime=INFINITE State=UP"
} > /tmp/slurm-vc.conf.$$
$SUDO mv /tmp/slurm-vc.conf.$$ "$CONF"

# in_host NS HOSTNAME CMD…: a daemon in namespace NS with its own hostname, /etc/hosts, TmpFS.
in_host() {
  local ns=$1 name=$2; shift 2
  $SUDO mkdir -p "$DIR/tmp" "$DIR/tmp-$name"
  $SUDO nsenter --net=/run/netns/$ns unshare --mount --uts /bin/sh -c "
    mount --bind /etc/netns/$ns/hosts /etc/hosts && mount --bind $DIR/tmp-$name $DIR/tmp && hostname $name &&
    exec env SLURM_CONF=$CONF \"\$@\"" sh "$@" </dev/null >/dev/null 2>&1
}
# start NS HOSTNAME PIDFILE CMD…: unless running, start a daemon; a failed start is retried
# once after a second (seen once in CI: slurmctld exited at start and the script ended with no
# message), then reported with its log's tail.
start() {
  local ns=$1 name=$2 pid=$3; shift 3
  [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null && return 0
  in_host "$ns" "$name" "$@" && return 0
  sleep 1
  in_host "$ns" "$name" "$@" && return 0
  echo "slurm-up: $1 on $name did not start (exit $?); last log lines:" >&2
  tail -n 5 "$DIR"/log/* >&2 2>/dev/null || true
  exit 1
}
start cortado-head head "$DIR/slurmctld.pid" slurmctld
for _ in $(seq 50); do vc scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
for i in $(seq 1 "$N"); do start cortado-node$i node$i "$DIR/slurmd-node$i.pid" slurmd -N node$i; done
for _ in $(seq 150); do [ "$(vc sinfo -h -N -o %t 2>/dev/null | grep -c idle)" = "$N" ] && break; sleep 0.2; done
[ "$(vc sinfo -h -N -o %t | grep -c idle)" = "$N" ] || { echo "slurm-up: the $N nodes did not come up idle; see $DIR/log" >&2; exit 1; }
echo "slurm-up: $N-node Slurm is up on the virtual cluster (node1..node$N, controller head); use cluster/slurm-vc.sh CMD" >&2
