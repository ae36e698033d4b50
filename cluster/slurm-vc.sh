#!/usr/bin/env bash
# Runs a Slurm client command (sbatch, squeue, scontrol, sinfo, sacct…) against the multi-node
# Slurm of `cluster/slurm-up.sh N`: from the head namespace, with its config.
#   cluster/slurm-vc.sh sbatch -N 2 jobs/train.sbatch jobs/fashion-mlp.yaml
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
exec $SUDO ip netns exec cortado-head env SLURM_CONF=/etc/slurm-vcluster/slurm.conf "$@"
