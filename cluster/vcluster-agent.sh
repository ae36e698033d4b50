#!/usr/bin/env bash
# Open MPI's launch agent for the virtual cluster (mpirun --mca plm_rsh_agent THIS): mpirun
# calls it like ssh — options, a host name, a command — and it runs the command inside that
# host's namespace with the host name set (Open MPI needs distinct host names).
while [[ $# -gt 0 && $1 == -* ]]; do shift; done   # ssh-style options mpirun may pass
host=$1; shift
exec ip netns exec "cortado-$host" unshare --uts /bin/sh -c 'hostname "$0"; exec /bin/sh -c "$*"' "$host" "$@"
