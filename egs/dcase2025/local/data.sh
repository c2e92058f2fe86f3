#!/usr/bin/env bash
# Stage 1 of the DCASE 2025 recipe: the shared egs/TEMPLATE/local_common/data.sh with --corpus_year 2025
# (options: local/data.sh --help), found through the recipe's utils link (run from the recipe directory).
set -euo pipefail
exec "$(readlink -f utils)/../local_common/data.sh" --corpus_year 2025 "$@"
