#!/usr/bin/env bash
# Local job launcher (Kaldi's run.pl): runs the jobs as local processes, at most --max_jobs_run at once.
#   utils/local.sh [--max_jobs_run N] [--gpu N] [--mem M] [--num_threads N] [--time T] \
#       [JOB=1:N] <log-file> <command> [<arg> ...]
# --gpu N: each job gets its own N of the visible GPUs (CUDA_VISIBLE_DEVICES); other resource
# options are accepted and ignored. Rerunning a failed call repeats only the failed jobs.
# See utils/README.md and `utils/local.sh --help`. Needs the venv's python (source path.sh first).
set -euo pipefail
exec python -m asdlib.launch.local "$@"
