#!/usr/bin/env bash
# Succeeds when nothing that cluster/slurm-up.sh or cluster/vcluster-up.sh starts is left:
# no Slurm or munge daemon, no cortado-* network namespace, bridge or veth, no state folders.
# Prints what is left otherwise (cluster/test.sh runs it after the teardown).
left=()
for p in slurmctld slurmd slurmstepd munged; do pgrep -x "$p" >/dev/null && left+=("process $p"); done
pgrep -f "[c]ortado-train" >/dev/null && left+=("cortado-train ranks")
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cortado-'); do left+=("namespace $ns"); done
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^(cortado-br0|veth-c[0-9]+|veth-head)' | cut -d@ -f1); do left+=("link $l"); done
for d in /tmp/cortado-slurm /tmp/cortado-slurm-vc /etc/netns/cortado-node1 /etc/netns/cortado-head; do [ -e "$d" ] && left+=("$d"); done
[ ${#left[@]} -eq 0 ] || { echo "${left[*]}"; exit 1; }
