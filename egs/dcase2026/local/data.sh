#!/usr/bin/env bash
# Stage 1 of the DCASE 2026 recipe: the shared egs/TEMPLATE/local_common/data.sh with --corpus_year 2026
# (options: local/data.sh --help), found through the recipe's utils link (run from the recipe directory).
# The evaluation test set is not released, so the default sets leave eval_test out; pass
# --sets dev_train,dev_test,eval_train,eval_test once it is.
set -euo pipefail
exec "$(readlink -f utils)/../local_common/data.sh" --corpus_year 2026 \
    --sets dev_train,dev_test,eval_train "$@"
