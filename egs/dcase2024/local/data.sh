#!/usr/bin/env bash
# Stage 1 of the DCASE 2024 recipe: the shared egs/TEMPLATE/local_common/data.sh with --year 2024
# (options: local/data.sh --help).
set -euo pipefail
exec "$(dirname "$(readlink -f "$0")")/../../TEMPLATE/local_common/data.sh" --year 2024 "$@"
