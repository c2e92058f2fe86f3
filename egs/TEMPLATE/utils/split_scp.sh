#!/usr/bin/env bash
# Split an scp into N parts of contiguous sorted keys (Kaldi's split_scp.pl):
#   utils/split_scp.sh <in.scp> <out.1.scp> ... <out.N.scp>
#   utils/split_scp.sh --nj N <in.scp> <dir/keys.JOB.scp>
# Errors if N exceeds the number of lines. See `utils/split_scp.sh --help` and utils/README.md.
set -euo pipefail
exec python -m asdlib.launch.split_scp "$@"
