#!/usr/bin/env bash
# Shared ASD recipe: every egs/<recipe>/run.sh calls this with its scoring year and configs.
# Stages (docs/design.md §3): 1 data prep, 2 labels, 3 training, 4 embeddings, 5 scoring (the back end) + CSVs,
# 6 official metric, 7 packing. Options are shell variables below, set with --name value.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# General options
stage=1               # first stage to run
stop_stage=10000      # last stage to run
nj=4                  # parallel jobs for extraction and scoring
ngpu=0                # GPUs per training job (>1 launches torchrun DDP)
nproc=1               # processes per node for DDP on CPU (gloo); ignored when ngpu > 0
num_nodes=1           # nodes for multi-node training (Slurm: srun + torchrun rendezvous)
year=2024             # scoring year: submission file names and official metric (the corpus year is local/data.sh's --corpus_year)
datadir=data          # where data/<set> dirs are written
expdir=exp            # experiment root
train_sets="dev_train eval_train"   # sets whose embeddings the back end is fitted on
test_sets="dev_test eval_test"      # sets that are scored and evaluated
local_data_opts=""    # options passed to local/data.sh (e.g. "--eval_list path --download true")
skip_bad=false        # stage 1: drop unusable audio files into data/<set>/bad.list instead of failing
train_config=conf/train.yaml        # training config (YAML)
download_upstream=false # true: fetch the config's official upstream checkpoint if absent (docs/upstreams.md)
upstream_mirror=""    # base URL of a mirror for --download_upstream (<mirror>/<host>/<path>)
skip_unlabelled=false # stage 6: true skips sets without ground truth (a blind set prepared without its eval list) instead of failing
explain=false         # stage 6: true also explains the anomalous test clips with the packed model (run stage 7 first): exp/<tag>/explain/<set>/
explain_grid=10x8     # stage 6 with --explain true: <time segments>x<mel bands> of the maps
tag=""                # experiment name; default: the config file name without .yaml (+ _<train_args>)
train_args=""         # config overrides "key=value ...", e.g. "optim.lr=1e-4 finetune.rank=16" (no spaces in a value)
fpr=0.05              # stages 6-7: false-alarm rate the packed model's decision thresholds aim at
calib_folds=5         # stages 6-7: folds over the training normals for those thresholds (held-out scores)
pack_tar=false        # stage 7: also write exp/<tag>/packed.tar
submission_rows="file"  # stage 5: submission row names: file (the corpus file name, as DCASE evaluators match) or utt (unique per recording)
python=python3

help_message=$(cat <<EOM
Usage: ./run.sh [options]   (egs/<recipe>/run.sh passes them to asd.sh, the shared recipe)
  --stage N / --stop_stage M   run stages N..M (1 data, 2 labels, 3 train, 4 embed, 5 score, 6 evaluate, 7 pack)
  --nj ${nj}                    parallel jobs for stages 4 and 5 (via \$extract_cmd / \$score_cmd from cmd.sh)
  --ngpu ${ngpu}                  GPUs for training (>1: torchrun DDP); --nproc N: DDP processes on CPU
  --num_nodes ${num_nodes}             nodes for multi-node training under Slurm
  --year ${year}               scoring year: submission file names and official metric (corpus year: local/data.sh)
  --train_config ${train_config}
  --download_upstream ${download_upstream}   fetch the config's official upstream checkpoint when absent (--upstream_mirror URL)
  --tag NAME                    experiment name (default: config file name, plus _<train_args> when given)
  --train_args "k=v ..."        config overrides, type-checked like the YAML (e.g. "optim.lr=1e-4 finetune.rank=16")
  --fpr ${fpr}  --calib_folds ${calib_folds}  --pack_tar ${pack_tar}   stages 6-7: thresholds at this false-alarm rate; packed.tar
  --local_data_opts "..."       options for local/data.sh (--eval_list <csv>, --download true)
  --skip_bad ${skip_bad}          stage 1: move unusable audio files to data/<set>/bad.list instead of failing
  --skip_unlabelled ${skip_unlabelled}   stage 6: skip (instead of failing on) test sets without ground truth
  --explain ${explain}  --explain_grid ${explain_grid}   stage 6: why each anomalous test clip alarmed (needs stage 7's pack): exp/<tag>/explain/<set>/
  --submission_rows ${submission_rows}   stage 5: submission row names, file (DCASE) or utt (unique per recording: egs/custom)
  --train_sets "${train_sets}"  --test_sets "${test_sets}"
EOM
)

run_args="$0 $*"
# shellcheck disable=SC1091
. utils/parse_options.sh
if [ $# -ne 0 ]; then
    log "unexpected arguments: $*"; echo "${help_message}" >&2; exit 1
fi
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./cmd.sh
: "${train_cmd:?cmd.sh must set train_cmd}" "${extract_cmd:?cmd.sh must set extract_cmd}" "${score_cmd:?cmd.sh must set score_cmd}"

if [ -z "${tag}" ]; then
    tag=$(basename "${train_config}" .yaml)
    # ESPnet style: the overrides name the experiment, e.g. train_optim.lr1e-4_finetune.rank16
    [ -z "${train_args}" ] || tag="${tag}_$(echo "${train_args}" | sed -e 's/=//g' -e 's/[^A-Za-z0-9._,+-]\{1,\}/_/g' -e 's/^_//' -e 's/_$//')"
fi
# One source of truth for the training sets: --train_sets (the back end's training clips) goes to every
# stage that reads the config, which sets it as data.train_sets (recorded in exp/<tag>/config.yaml)
# and rejects a data.train_sets in the YAML or in --train_args (docs/design.md §3).
config_overrides=(--train_sets "${train_sets}")
for a in ${train_args}; do config_overrides+=(--override "${a}"); done
exp="${expdir}/${tag}"
mkdir -p "${exp}"
echo "${run_args}" > "${exp}/run_args.txt"
# The device follows --ngpu in every stage: the python CLIs never pick a GPU on their own.
if [ "${ngpu}" -gt 0 ]; then device=cuda; extract_gpu=1; else device=cpu; extract_gpu=0; fi

if { [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; } || [ "${download_upstream}" = true ]; then
    # Training needs the config's upstream checkpoint: fail (or fetch it) now, not after stages 1-2.
    # (Stage 4 alone checks the trained experiment's own config.yaml below.)
    ${python} -m asdlib.bin.check_upstream --config "${train_config}" "${config_overrides[@]}" \
        --download "${download_upstream}" ${upstream_mirror:+--mirror "${upstream_mirror}"}
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data preparation (local/data.sh ${local_data_opts})"
    # shellcheck disable=SC2086  # local_data_opts is a list of options
    local/data.sh --datadir "${datadir}" ${local_data_opts}
    _sets=()
    for s in ${train_sets} ${test_sets}; do _sets+=("${datadir}/${s}"); done
    # Long recordings become fixed windows when the config sets data.window_seconds (else a no-op).
    ${python} -m asdlib.bin.make_windows --config "${train_config}" "${config_overrides[@]}" "${_sets[@]}"
    log "Stage 1: audio validation of every set (--skip_bad ${skip_bad})"
    ${python} -m asdlib.bin.validate_data --config "${train_config}" "${config_overrides[@]}" --skip_bad "${skip_bad}" "${_sets[@]}"
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: training labels and durations"
    _train=(); _other=()
    for s in ${train_sets}; do _train+=("${datadir}/${s}"); done
    for s in ${test_sets}; do _other+=("${datadir}/${s}"); done
    ${python} -m asdlib.bin.make_labels --train_sets "${_train[@]}" --other_sets "${_other[@]}"
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: training ${train_config} -> ${exp} (log: ${exp}/train.log)"
    utils/train.sh --ngpu "${ngpu}" --nproc "${nproc}" --num_nodes "${num_nodes}" --python "${python}" "${exp}/train.log" \
        --config "${train_config}" "${config_overrides[@]}" --data_root "${datadir}" --exp_dir "${exp}" --resume true --device "${device}"
fi

# Stages 4 and 5 leave <workdir>/.done per set: a digest of the set's inputs and outputs. A rerun
# (after a kill or a failure) skips the sets whose marker still matches, and the launcher repeats
# only the unfinished jobs of the interrupted set; changed inputs (a retrained model, new
# embeddings, an edited data dir) redo the set. Delete <workdir>/.done to redo a set anyway.
digest() {
    local f
    for f in "$@"; do
        if [ -f "${f}" ]; then sha256sum -- "${f}"; else echo "missing ${f}"; fi
    done | sha256sum | cut -d' ' -f1
}
# is_done <workdir> <file...>: true if the marker matches the files; otherwise it is removed.
is_done() {
    local dir=$1; shift
    if [ -f "${dir}/.done" ] && [ "$(cat "${dir}/.done")" = "$(digest "$@")" ]; then return 0; fi
    rm -f "${dir}/.done"
    return 1
}
mark_done() {
    local dir=$1; shift
    digest "$@" > "${dir}/.done.tmp"
    mv -f "${dir}/.done.tmp" "${dir}/.done"
}

# split_and_run <cmd> <set> <workdir> <name> <python module args...>: run a per-utterance stage over
# nj jobs (JOB=1:N) and merge the per-job ark/scp into <workdir>/<name>.{ark,scp}.
split_and_run() {
    local cmd=$1 set=$2 dir=$3 name=$4; shift 4
    local n; n=$(min "${nj}" "$(wc -l < "${datadir}/${set}/wav.scp")")
    mkdir -p "${dir}/split${n}" "${dir}/log"
    utils/split_scp.sh --nj "${n}" "${datadir}/${set}/wav.scp" "${dir}/split${n}/keys.JOB"
    ${cmd} JOB=1:"${n}" "${dir}/log/${name}.JOB.log" \
        "${python}" -m "$@" --keys "${dir}/split${n}/keys.JOB" \
        --out_ark "${dir}/split${n}/${name}.JOB.ark" --out_scp "${dir}/split${n}/${name}.JOB.scp"
    utils/merge_ark.sh --nj "${n}" --keys "${datadir}/${set}/wav.scp" "${dir}/${name}.ark" "${dir}/${name}.scp" \
        "${dir}/split${n}/${name}.JOB.scp"
}

# embed_set <set> <embed name> <what> [extract options...]: stage 4 of one set into exp/<tag>/embed/<name>.
embed_set() {
    local s=$1 name=$2 what=$3; shift 3
    local dir="${exp}/embed/${name}"
    local io=("${datadir}/${s}"/* "${exp}/config.yaml" "${exp}/model.pt" "${exp}/upstream.fingerprint"
              "${dir}/embeddings.ark" "${dir}/embeddings.scp")
    if is_done "${dir}" "${io[@]}"; then
        log "Stage 4: ${what} of ${s} are up to date (delete ${dir}/.done to redo them)"; return
    fi
    log "Stage 4: ${what} of ${s} (${nj} jobs)"
    split_and_run "${extract_cmd} --gpu ${extract_gpu}" "${s}" "${dir}" embeddings \
        asdlib.bin.extract --exp_dir "${exp}" --model_file "${exp}/model.pt" --data_dir "${datadir}/${s}" \
        --device "${device}" "$@"
    mark_done "${dir}" "${io[@]}"
}

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    # The upstream checkpoint's size and sha256 join the digest: replacing it redoes the sets.
    ${python} -m asdlib.bin.check_upstream --config "${exp}/config.yaml" --fingerprint_out "${exp}/upstream.fingerprint"
    for s in ${train_sets} ${test_sets}; do
        embed_set "${s}" "${s}" embeddings
    done
    # backend.noise: the noise-only sets the config names, read with its channel, each into its own
    # embed/<name> (asdlib.bin.noise_sets prints "<set> <name> [<channel>]"; nothing when it names none)
    _noise_sets=$(${python} -m asdlib.bin.noise_sets --config "${exp}/config.yaml")
    readarray -t _noise <<< "${_noise_sets}"
    for _line in "${_noise[@]}"; do
        read -r s _name _channel <<< "${_line}"
        [ -n "${s}" ] || continue
        embed_set "${s}" "${_name}" "noise embeddings${_channel:+ (channel ${_channel})}" ${_channel:+--channel "${_channel}"}
    done
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    _banks=("${exp}/config.yaml" "${exp}"/embed/*/embeddings.ark "${exp}"/embed/*/embeddings.scp)
    for t in ${train_sets}; do _banks+=("${datadir}/${t}"/*); done
    # the backend.noise sets' data dirs (their embeddings are among embed/*/ above)
    _noise_sets=$(${python} -m asdlib.bin.noise_sets --config "${exp}/config.yaml")
    readarray -t _noise <<< "${_noise_sets}"
    for _line in "${_noise[@]}"; do
        if [ -n "${_line}" ]; then _banks+=("${datadir}/${_line%% *}"/*); fi
    done
    for s in ${train_sets} ${test_sets}; do
        _dir="${exp}/scores/${s}"
        _io=("${_banks[@]}" "${datadir}/${s}"/* "${_dir}/scores.ark" "${_dir}/scores.scp")
        _loo=(); case " ${train_sets} " in *" ${s} "*) _loo=(--leave_one_out) ;; esac
        if is_done "${_dir}" "${_io[@]}"; then
            log "Stage 5: scores of ${s} are up to date (delete ${_dir}/.done to redo them)"; continue
        fi
        log "Stage 5: scoring ${s} (${nj} jobs${_loo:+, leave-one-out for decision thresholds})"
        split_and_run "${score_cmd}" "${s}" "${_dir}" scores \
            asdlib.bin.score --exp_dir "${exp}" --data_root "${datadir}" --test_set "${s}" "${_loo[@]}"
        mark_done "${_dir}" "${_io[@]}"
        if [ -f "${datadir}/${s}/utt2seg" ]; then  # windows of long recordings: a score per recording too
            ${python} -m asdlib.bin.aggregate_scores --exp_dir "${exp}" --data_dir "${datadir}/${s}" --scores_dir "${_dir}"
        fi
    done
    for s in ${test_sets}; do
        if [ -f "${datadir}/${s}/utt2seg" ]; then
            log "Stage 5: ${s} is split into windows (not a DCASE set): no submission CSVs"; continue
        fi
        log "Stage 5: submission CSVs of ${s}"
        # shellcheck disable=SC2086  # train_sets is a list of set names
        ${python} -m asdlib.bin.write_submission --year "${year}" --data_root "${datadir}" \
            --scores_dir "${exp}/scores" --test_set "${s}" --train_sets ${train_sets} --row_names "${submission_rows}"
    done
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    for s in ${test_sets}; do
        log "Stage 6: official ${year} metric on ${s}"
        ${python} -m asdlib.bin.evaluate --year "${year}" --data_dir "${datadir}/${s}" \
            --scores "${exp}/scores/${s}/scores.scp" --out_dir "${exp}/results/${s}" \
            --skip_unknown "${skip_unlabelled}"
        if [ "${explain}" = true ]; then
            if [ ! -f "${exp}/packed/manifest.json" ]; then
                log "--explain true needs the packed model ${exp}/packed: run stage 7, then --stage 6 --stop_stage 6 --explain true"
                exit 1
            fi
            log "Stage 6: explaining the anomalous clips of ${s} -> ${exp}/explain/${s}/"
            mkdir -p "${exp}/explain/${s}"
            # '<path> <machine> <section>' per anomalous recording (the data dir files share their sorted keys)
            paste -d ' ' "${datadir}/${s}/utt2label" "${datadir}/${s}/utt2machine" "${datadir}/${s}/utt2section" \
                "${datadir}/${s}/wav.scp" | awk '$2 == "anomaly" { m = $4; n = $6; for (i = 0; i < 7; i++) sub(/^[^ ]+ /, ""); print $0, m, n }' \
                | sort -u > "${exp}/explain/${s}/anomalous.list"
            ${python} -m asdlib.bin.infer --packed "${exp}/packed" --list "${exp}/explain/${s}/anomalous.list" \
                --out "${exp}/explain/${s}/scores.csv" --explain "${exp}/explain/${s}" --explain_grid "${explain_grid}" \
                --device "${device}"
        fi
    done
    log "Stage 6: operating figures at the thresholds stage 7 packs (--fpr ${fpr}, --calib_folds ${calib_folds})"
    # shellcheck disable=SC2086  # test_sets is a list of set names
    ${python} -m asdlib.bin.operating --exp_dir "${exp}" --data_root "${datadir}" --test_sets ${test_sets} \
        --fpr "${fpr}" --folds "${calib_folds}"
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Stage 7: packing ${exp} -> ${exp}/packed"
    # shellcheck disable=SC2086  # train_sets is a list of set names
    ${python} -m asdlib.bin.pack --exp_dir "${exp}" --data_root "${datadir}" --train_sets ${train_sets} \
        --out_dir "${exp}/packed" --fpr "${fpr}" --folds "${calib_folds}" --tar "${pack_tar}" --device "${device}"
fi

log "Successfully finished stages ${stage}-$(min "${stop_stage}" 7) of ${exp}"
