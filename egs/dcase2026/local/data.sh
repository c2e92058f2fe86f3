#!/usr/bin/env bash
# Stage 1 of the DCASE 2026 recipe: the shared egs/TEMPLATE/local_common/data.sh with --year 2026.
# The evaluation test set is not released, so the default sets leave eval_test out; pass
# --sets dev_train,dev_test,eval_train,eval_test once it is (options: local/data.sh --help).
set -euo pipefail
exec "$(dirname "$(readlink -f "$0")")/../../TEMPLATE/local_common/data.sh" --year 2026 \
    --sets dev_train,dev_test,eval_train "$@"
