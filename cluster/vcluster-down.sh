#!/usr/bin/env bash
# Removes the virtual cluster cluster/vcluster-up.sh made (its namespaces, veths and bridge).
set -uo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
for ns in $($SUDO ip netns list | awk '{print $1}' | grep '^cortado-node'); do
  $SUDO ip netns pids "$ns" | xargs -r $SUDO kill -9 2>/dev/null
  $SUDO ip netns del "$ns"
  $SUDO rm -rf "/etc/netns/$ns"
done
$SUDO ip link del cortado-br0 2>/dev/null
rm -f "$(cd "$(dirname "$0")/.." && pwd)/hostfiles/vcluster"
echo "vcluster-down: removed" >&2
