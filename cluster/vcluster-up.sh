#!/usr/bin/env bash
# A virtual cluster of N hosts on this machine: network namespaces cortado-node1..N, each with a
# veth on a bridge (10.77.0.11, .12, …; the bridge has no address, so traffic stays between
# these namespaces), its own /etc/hosts (via /etc/netns), and a hostfile for mpirun.
# Idempotent; cluster/vcluster-down.sh removes it. Run mpirun through cluster/vcluster-run.sh.
#
# usage: cluster/vcluster-up.sh [N=2] [SLOTS=1]
set -euo pipefail
N=${1:-2}
SLOTS=${2:-1}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
command -v ip >/dev/null || { $SUDO apt-get update -qq; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iproute2 >/dev/null; }
BR=cortado-br0
HOSTFILE=$(cd "$(dirname "$0")/.." && pwd)/hostfiles/vcluster
$SUDO ip link show $BR >/dev/null 2>&1 || { $SUDO ip link add $BR type bridge; $SUDO ip link set $BR up; }
hosts=""
for i in $(seq 1 "$N"); do hosts+="10.77.0.$((10 + i)) node$i"$'\n'; done
: > "$HOSTFILE.tmp"
for i in $(seq 1 "$N"); do
  ns=cortado-node$i
  if ! $SUDO ip netns list | grep -qw $ns; then
    $SUDO ip netns add $ns
    $SUDO ip link add veth-c$i type veth peer name eth0 netns $ns
    $SUDO ip link set veth-c$i master $BR up
    $SUDO ip netns exec $ns ip addr add 10.77.0.$((10 + i))/24 dev eth0
    $SUDO ip netns exec $ns ip link set eth0 up
    $SUDO ip netns exec $ns ip link set lo up
  fi
  $SUDO mkdir -p /etc/netns/$ns
  printf '127.0.0.1 localhost\n%s' "$hosts" | $SUDO tee /etc/netns/$ns/hosts >/dev/null
  echo "node$i slots=$SLOTS" >> "$HOSTFILE.tmp"
done
{ echo "# Written by cluster/vcluster-up.sh: the virtual cluster's hosts (network namespaces)."; cat "$HOSTFILE.tmp"; } > "$HOSTFILE"
rm -f "$HOSTFILE.tmp"
# Check: every host reaches every other over the bridge (a TCP connect; ping may be absent).
# The listener sets SO_REUSEADDR: a rerun within a minute (test.sh starts the cluster, then
# slurm-up.sh 2 runs this again) otherwise found port 7777 in TIME_WAIT, could not bind, and
# the connect was refused. The connect is retried until the listener is up (python's start
# takes longer than any fixed sleep on a busy machine).
for i in $(seq 1 "$N"); do for j in $(seq 1 "$N"); do
  [ "$i" = "$j" ] && continue
  addr=10.77.0.$((10 + j))
  $SUDO ip netns exec cortado-node$j timeout 10 python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('$addr', 7777)); s.listen(1); s.accept()" &
  listener=$!
  reached=""
  for _ in $(seq 40); do
    if $SUDO ip netns exec cortado-node$i timeout 3 python3 -c "import socket; socket.create_connection(('$addr', 7777), 2)" 2>/dev/null; then
      reached=1; break
    fi
    sleep 0.2
  done
  [ -n "$reached" ] || kill "$listener" 2>/dev/null || true
  wait "$listener" 2>/dev/null || true
  [ -n "$reached" ] || { echo "vcluster-up: node$i cannot reach node$j ($addr:7777, 8 s of tries)" >&2; exit 1; }
done; done
echo "vcluster-up: $N hosts (node1..node$N, 10.77.0.11–$((10 + N))), hostfile $HOSTFILE" >&2
