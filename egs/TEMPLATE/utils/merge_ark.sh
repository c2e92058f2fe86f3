#!/usr/bin/env bash
# Merge per-job ark/scp outputs into one ark/scp pair sorted by key (identical for any nj):
#   utils/merge_ark.sh [--keys <file>] <out.ark> <out.scp> <in.1.scp> ... <in.N.scp>
#   utils/merge_ark.sh --nj N [--keys <file>] <out.ark> <out.scp> <dir/out.JOB.scp>
# Duplicate keys are an error; --keys also checks that exactly the listed keys are present.
set -euo pipefail
exec python -m asdlib.launch.merge_ark "$@"
