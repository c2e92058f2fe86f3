#!/usr/bin/env bash
# Slurm job launcher (Kaldi's slurm.pl): one `sbatch --wait --array` job, options mapped by conf/slurm.conf.
#   utils/slurm.sh [--config conf/slurm.conf] [--max_jobs_run N] [--gpu N] [--mem M] [--num_threads N] \
#       [--time T] [JOB=1:N] <log-file> <command> [<arg> ...]
# Rerunning a failed call repeats only the failed tasks. See utils/README.md and `utils/slurm.sh --help`.
# Needs the venv's python (source path.sh first); the tasks source ./path.sh of the submit directory.
set -euo pipefail
exec python -m asdlib.launch.slurm "$@"
