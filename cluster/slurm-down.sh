#!/usr/bin/env bash
# Stops what cluster/slurm-up.sh started (slurmd, slurmctld, munged) and removes its state.
# Idempotent. Leaves the installed packages alone.
set -uo pipefail
DIR=${CORTADO_SLURM_DIR:-/tmp/cortado-slurm}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
scancel --user="$(id -un)" 2>/dev/null
for d in slurmd slurmctld; do
  [ -f "$DIR/$d.pid" ] && $SUDO kill "$(cat "$DIR/$d.pid")" 2>/dev/null
done
for _ in $(seq 50); do pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break; sleep 0.1; done
[ -f "$DIR/started-munged" ] && $SUDO pkill -x munged
$SUDO rm -rf "$DIR"
echo "slurm-down: stopped" >&2
