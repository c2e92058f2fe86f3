#!/usr/bin/env bash
# Stage 1 of the mini recipe: generate the synthetic DCASE-format corpus when it is absent,
# then prepare the four Kaldi data dirs (and, for 2025, the supplemental sets). --family b: the second sound model and domain shift
# (asdlib.synth.family_b) in ${MINI_B}; --family c: the held-out family (asdlib.synth.family_c) in
# ${MINI_C}; --family d: DCASE's hard domain shift at DCASE's proportions (asdlib.synth.family_d)
# in ${MINI_D}; --family e: the held-out family of the same hardness (asdlib.synth.family_e) in
# ${MINI_E}; use them with their own --datadir/--expdir (local/two_families.sh).
# --year (default 2024) is passed to make_synth and prepare_dcase; a year other than 2024 is written
# to <root>_<year> (the 2024 corpora stay as they are):
#   2025: every machine also gets supplemental/ clips, 100 clean machine clips and 100 noise-only
#         clips by default (--n_supplemental_machine/--n_supplemental_noise in synth_opts override
#         them), prepared as dev_supplemental, eval_supplemental and their one-kind sets
#         {dev,eval}_supplemental_machine and {dev,eval}_supplemental_noise;
#   2026: stereo files (channel 0 near, channel 1 far microphone); nothing extra is prepared, the
#         training config's data.channel picks the channel.
set -euo pipefail

datadir=data
eval_list=""          # official-format eval list; default: eval_data_list_2024.csv under the corpus root
download=false        # the mini corpus is generated, never downloaded
synth_opts=""         # extra options for python -m asdlib.bin.make_synth (e.g. "--n_train_source 20")
family=a              # corpus family: a (asdlib.synth.corpus, in ${MINI}), b, c, d or e (asdlib.synth.family_<x>, in ${MINI_<X>})
year=2024             # DCASE layout: 2023, 2024, 2025 (supplemental clips) or 2026 (stereo)
help_message="Usage: local/data.sh [--datadir data] [--family a|b|c|d|e] [--year 2023|2024|2025|2026] [--eval_list csv] [--synth_opts \"...\"]"

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
sets=(dev_train dev_test eval_train eval_test)
case "${year}" in
    2023|2024|2026) ;;
    2025)
        synth_opts="--n_supplemental_machine 100 --n_supplemental_noise 100 ${synth_opts}"  # later options win
        sets+=(dev_supplemental eval_supplemental dev_supplemental_machine dev_supplemental_noise
               eval_supplemental_machine eval_supplemental_noise) ;;
    *) echo "local/data.sh: --year must be 2023, 2024, 2025 or 2026, got '${year}'" >&2; exit 1 ;;
esac
[ "${year}" = 2024 ] || root="${root}_${year}"
if [ ! -f "${root}/.done" ] || [ ! -f "${root}/anomaly_regions.csv" ]; then  # an older corpus gains its anomaly regions
    echo "local/data.sh: generating the synthetic corpus (family ${family}, DCASE ${year} layout) in ${root}" >&2
    # shellcheck disable=SC2086  # synth_opts is a list of options
    python -m asdlib.bin.make_synth --root "${root}" --year "${year}" ${synth_opts}
fi
opts=()
[ -z "${eval_list}" ] || opts+=(--eval_list "${eval_list}")
python -m asdlib.bin.prepare_dcase --year "${year}" --root "${root}" --data_dir "${datadir}" --sets "${sets[@]}" "${opts[@]}"
