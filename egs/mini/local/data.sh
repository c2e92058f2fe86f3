#!/usr/bin/env bash
# Stage 1 of the mini recipe: generate the synthetic DCASE-2024-format corpus when it is absent,
# then prepare the four Kaldi data dirs. --family b: the second sound model and domain shift
# (asdlib.synth.family_b) in ${MINI_B}; --family c: the held-out family (asdlib.synth.family_c) in
# ${MINI_C}; --family d: DCASE's hard domain shift at DCASE's proportions (asdlib.synth.family_d)
# in ${MINI_D}; --family e: the held-out family of the same hardness (asdlib.synth.family_e) in
# ${MINI_E}; use them with their own --datadir/--expdir (local/two_families.sh).
set -euo pipefail

datadir=data
eval_list=""          # official-format eval list; default: eval_data_list_2024.csv under the corpus root
download=false        # the mini corpus is generated, never downloaded
synth_opts=""         # extra options for python -m asdlib.bin.make_synth (e.g. "--n_train_source 20")
family=a              # corpus family: a (asdlib.synth.corpus, in ${MINI}), b, c, d or e (asdlib.synth.family_<x>, in ${MINI_<X>})
help_message="Usage: local/data.sh [--datadir data] [--family a|b|c|d|e] [--eval_list csv] [--synth_opts \"...\"]"

# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./db.sh

if [ "${download}" = true ]; then
    echo "local/data.sh: the mini corpus is synthetic: it is generated, not downloaded" >&2
fi
# family a lives in ${MINI}, family x in ${MINI_X} (db.sh)
case "${family}" in
    a) root="${MINI}" ;;
    [b-z]) root_var="MINI_${family^^}"; root="${!root_var:-}"; synth_opts="--family ${family} ${synth_opts}" ;;
    *) root="" ;;
esac
if [ -z "${root}" ]; then
    echo "local/data.sh: --family must be a, b, c, d or e (a family with its corpus root in db.sh), got '${family}'" >&2
    exit 1
fi
if [ ! -f "${root}/.done" ]; then
    echo "local/data.sh: generating the synthetic corpus (family ${family}) in ${root}" >&2
    # shellcheck disable=SC2086  # synth_opts is a list of options
    python -m asdlib.bin.make_synth --root "${root}" --year 2024 ${synth_opts}
fi
opts=()
[ -z "${eval_list}" ] || opts+=(--eval_list "${eval_list}")
python -m asdlib.bin.prepare_dcase --year 2024 --root "${root}" --data_dir "${datadir}" "${opts[@]}"
