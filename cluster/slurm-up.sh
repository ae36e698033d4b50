#!/usr/bin/env bash
# Starts a real Slurm (munge + slurmctld + slurmd from Debian's slurm-wlm) on this machine, for
# testing job scripts. No systemd needed: the daemons are started here. Idempotent: a running
# cluster is left alone. Stop it (both modes) with cluster/slurm-down.sh.
#
#   cluster/slurm-up.sh        one node with all the cores; config /etc/slurm/slurm.conf, state
#                              under $CORTADO_SLURM_DIR (default /tmp/cortado-slurm)
#   cluster/slurm-up.sh N      N nodes on the virtual cluster (cluster/vcluster-up.sh N): one
#                              slurmd per namespace host node1..N, slurmctld in a `head`
#                              namespace (10.77.0.10); config /etc/slurm-vcluster/slurm.conf,
#                              state /tmp/cortado-slurm-vc. It runs beside the one-node Slurm
#                              (other namespaces, other config); reach it with
#                              cluster/slurm-vc.sh sbatch|squeue|scontrol …
set -euo pipefail
NODES=${1:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CORTADO_SLURM_DIR:-/tmp/cortado-slurm}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm-up: installing slurm-wlm" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
# munge (one daemon; its socket serves every namespace, they share the filesystem). Marker
# files record what these scripts started, so slurm-down.sh stops only those.
$SUDO mkdir -p /run/munge /tmp/cortado-munge
$SUDO chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || $SUDO /usr/sbin/mungekey --create 2>/dev/null || $SUDO create-munge-key -f
if ! pgrep -x munged >/dev/null; then
  # Daemons get no inherited stdio: a caller reading this script's output would otherwise
  # wait forever for the pipe they hold open.
  if [ -n "$SUDO" ]; then sudo -u munge /usr/sbin/munged </dev/null >/dev/null 2>&1; else runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1; fi
  $SUDO touch /tmp/cortado-munge/started-munged
fi
[ "$NODES" -gt 0 ] && exec bash "$ROOT/cluster/slurm-vcluster-up.sh" "$NODES"

if scontrol ping 2>/dev/null | grep -q "is UP" && sinfo -h -o %t 2>/dev/null | grep -qE "idle|mix|alloc"; then
  echo "slurm-up: already running" >&2; exit 0
fi
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || echo "127.0.1.1 $HOST" | $SUDO tee -a /etc/hosts >/dev/null
$SUDO mkdir -p "$DIR"/{state,spool,log,tmp}

NODE=$(slurmd -C | head -1)            # NodeName=… CPUs=… Boards=… RealMemory=…
cat > /tmp/slurm.conf.$$ <<CONF
# Written by cortado cluster/slurm-up.sh: one node, no cgroups, no accounting.
ClusterName=cortado
SlurmctldHost=${HOST}(127.0.0.1)
$(grep -v "^#" "$ROOT/cluster/slurm-common.conf")
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
TmpFS=$DIR/tmp
${NODE} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
$SUDO mkdir -p /etc/slurm
$SUDO mv /tmp/slurm.conf.$$ /etc/slurm/slurm.conf
# Our own daemons, by pid file: the multi-node Slurm's run beside these.
running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }
running slurmctld || $SUDO slurmctld </dev/null >/dev/null 2>&1
for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
running slurmd || $SUDO slurmd </dev/null >/dev/null 2>&1
for _ in $(seq 100); do sinfo -h -o %t 2>/dev/null | grep -qE "^idle" && break; sleep 0.2; done
sinfo -h -o "%t" | grep -qE "^idle" || { echo "slurm-up: the node did not come up idle; see $DIR/log" >&2; exit 1; }
echo "slurm-up: Slurm is up ($(sinfo -h -o '%D node, %c CPUs, partition %P'))" >&2
