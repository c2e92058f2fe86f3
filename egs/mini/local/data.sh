#!/usr/bin/env bash
# Stage 1 of the mini recipe: generate the synthetic DCASE-2024-format corpus when it is absent,
# then prepare the four Kaldi data dirs.
set -euo pipefail

datadir=data
eval_list=""          # official-format eval list; default: eval_data_list_2024.csv under the corpus root
download=false        # the mini corpus is generated, never downloaded
synth_opts=""         # extra options for python -m asdlib.bin.make_synth (e.g. "--n_train_source 20")
help_message="Usage: local/data.sh [--datadir data] [--eval_list csv] [--synth_opts \"...\"]"

# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./db.sh

if [ "${download}" = true ]; then
    echo "local/data.sh: the mini corpus is synthetic: it is generated, not downloaded" >&2
fi
if [ ! -f "${MINI}/.done" ]; then
    echo "local/data.sh: generating the synthetic corpus in ${MINI}" >&2
    # shellcheck disable=SC2086  # synth_opts is a list of options
    python -m asdlib.bin.make_synth --root "${MINI}" --year 2024 ${synth_opts}
fi
opts=()
[ -z "${eval_list}" ] || opts+=(--eval_list "${eval_list}")
python -m asdlib.bin.prepare_dcase --year 2024 --root "${MINI}" --data_dir "${datadir}" "${opts[@]}"
