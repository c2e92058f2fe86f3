#!/usr/bin/env bash
# Run asdlib.bin.train through cmd.sh's $train_cmd, the one launcher of asd.sh and ssl.sh: one
# process, torchrun DDP on one node (--ngpu > 1 or --nproc > 1 on CPU), or srun + torchrun across
# --num_nodes nodes (utils/srun_torchrun.sh). Run it from the recipe folder.
#   utils/train.sh [--ngpu N] [--nproc N] [--num_nodes N] [--python python3] <log> <asdlib.bin.train options>
set -euo pipefail

ngpu=0
nproc=1
num_nodes=1
python=python3
help_message="Usage: utils/train.sh [--ngpu N] [--nproc N] [--num_nodes N] [--python P] <log> <asdlib.bin.train options>"

# shellcheck disable=SC1091
. utils/parse_options.sh
if [ $# -lt 1 ]; then
    echo "${help_message}" >&2; exit 1
fi
log_file=$1; shift
# shellcheck disable=SC1091
. ./cmd.sh
: "${train_cmd:?cmd.sh must set train_cmd}"

if [ "${ngpu}" -gt 1 ] || [ "${nproc}" -gt 1 ] || [ "${num_nodes}" -gt 1 ]; then
    per_node=$(( ngpu > 0 ? ngpu : nproc ))
    if [ "${num_nodes}" -gt 1 ]; then
        # One srun task per node, each a torchrun with a c10d rendezvous on the job's first node.
        ${train_cmd} --gpu "${ngpu}" --num_threads "${per_node}" --num_nodes "${num_nodes}" "${log_file}" \
            utils/srun_torchrun.sh "${num_nodes}" "${per_node}" -m asdlib.bin.train "$@"
    else
        ${train_cmd} --gpu "${ngpu}" --num_threads "${per_node}" "${log_file}" \
            torchrun --standalone --nproc_per_node="${per_node}" -m asdlib.bin.train "$@"
    fi
else
    ${train_cmd} --gpu "${ngpu}" "${log_file}" "${python}" -m asdlib.bin.train "$@"
fi
