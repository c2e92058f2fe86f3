#!/usr/bin/env bash
# Shared self-supervised pre-training recipe (ESPnet ssl1 style): makes an upstream instead of
# fine-tuning one, with EAT's objective (docs/method.md §1.11). egs/<recipe>/run.sh calls it.
# Stages: 1 data dirs (from --corpus, or the recipe's local/data.sh) + audio validation + the
# trainer's clip index, 2 pre-training (resumable, DDP as in asd.sh), 3 export exp/<tag>/upstream.pt
# in EAT's official checkpoint format (any ASD recipe uses it with upstream.path=exp/<tag>/upstream.pt)
# and exp/<tag>/losses.png, the loss curves.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=1               # first stage to run
stop_stage=10000      # last stage to run
ngpu=0                # GPUs per training job (>1 launches torchrun DDP)
nproc=1               # processes per node for DDP on CPU (gloo); ignored when ngpu > 0
num_nodes=1           # nodes for multi-node training (Slurm: srun + torchrun rendezvous)
datadir=data          # where data/<set> dirs are written
expdir=exp            # experiment root
local_data_opts=""    # stage 1 without --corpus: options passed to local/data.sh (e.g. "--clips_per_machine 100")
corpus=""             # stage 1: audio of any format/rate/channels, the layouts of egs/custom (asdlib/data/custom.py); empty: local/data.sh
train_sets="train"    # data dirs pre-trained on (no labels are read from them)
skip_bad=false        # stage 1: drop unusable audio files into data/<set>/bad.list instead of failing
pretrain_config=conf/pretrain.yaml  # training config with pretrain.enabled: true and upstream.name: eat
init=random           # random: a new upstream of --init_size; checkpoint: the config's upstream.path (domain-adaptive pre-training)
init_size=""          # --init random: sizes "layers=2 dim=64 ffn_dim=128 heads=4" (asdlib.bin.make_random_upstream)
init_seed=0           # --init random: seed of the initial weights
tag=""                # experiment name; default: the config file name without .yaml (+ _<train_args>)
train_args=""         # config overrides "key=value ...", e.g. "optim.epochs=20 pretrain.clone_batch=8"
python=python3

help_message=$(cat <<EOM
Usage: ./run.sh [options]   (egs/<recipe>/run.sh passes them to ssl.sh, the shared pre-training recipe)
  --stage N / --stop_stage M   run stages N..M (1 data, 2 pre-train, 3 export exp/<tag>/upstream.pt)
  --ngpu ${ngpu}  --nproc ${nproc}  --num_nodes ${num_nodes}   DDP as in asd.sh
  --corpus DIR|LIST             stage 1: your recordings (egs/custom layouts); empty: local/data.sh
  --local_data_opts "..."       stage 1 without --corpus: options of local/data.sh
  --train_sets "${train_sets}"     data dirs pre-trained on
  --pretrain_config ${pretrain_config}
  --init ${init}  --init_size "k=v ..."  --init_seed ${init_seed}   random init, or the config's upstream.path (checkpoint)
  --tag NAME  --train_args "k=v ..."   experiment name; config overrides
  --skip_bad ${skip_bad}          stage 1: move unusable audio files to data/<set>/bad.list instead of failing
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
case "${init}" in
    random | checkpoint) ;;
    *) log "--init must be random or checkpoint, got '${init}'"; exit 1 ;;
esac

if [ -z "${tag}" ]; then
    tag=$(basename "${pretrain_config}" .yaml)
    [ -z "${train_args}" ] || tag="${tag}_$(echo "${train_args}" | sed -e 's/=//g' -e 's/[^A-Za-z0-9._,+-]\{1,\}/_/g' -e 's/^_//' -e 's/_$//')"
fi
exp="${expdir}/${tag}"
mkdir -p "${exp}"
echo "${run_args}" > "${exp}/run_args.txt"
config_overrides=(--train_sets "${train_sets}" --override pretrain.enabled=true)
if [ "${init}" = random ]; then config_overrides+=(--override "upstream.path=${exp}/init"); fi
for a in ${train_args}; do config_overrides+=(--override "${a}"); done
if [ "${ngpu}" -gt 0 ]; then device=cuda; else device=cpu; fi

if [ "${init}" = random ] && [ "${stage}" -le 2 ] && [ ! -e "${exp}/init" ]; then
    # before stage 1: its audio validation reads the upstream's shortest input
    _size=()
    for a in ${init_size}; do _size+=(--size "${a}"); done
    log "random-init EAT (${init_size:-default size}, seed ${init_seed}) -> ${exp}/init"
    ${python} -m asdlib.bin.make_random_upstream --name eat --out "${exp}/init" --seed "${init_seed}" "${_size[@]}"
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    if [ -n "${corpus}" ]; then
        log "Stage 1: data dirs from ${corpus}"
        ${python} -m asdlib.bin.prepare_custom --corpus "${corpus}" --data_dir "${datadir}"
    else
        log "Stage 1: data preparation (local/data.sh ${local_data_opts})"
        # shellcheck disable=SC2086  # local_data_opts is a list of options
        local/data.sh --datadir "${datadir}" ${local_data_opts}
    fi
    _sets=()
    for s in ${train_sets}; do _sets+=("${datadir}/${s}"); done
    ${python} -m asdlib.bin.validate_data --config "${pretrain_config}" "${config_overrides[@]}" --skip_bad "${skip_bad}" "${_sets[@]}"
    # the trainer's clip index (machine, section, domain); pre-training reads no label from it
    ${python} -m asdlib.bin.make_labels --train_sets "${_sets[@]}"
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: pre-training ${pretrain_config} -> ${exp} (log: ${exp}/train.log)"
    utils/train.sh --ngpu "${ngpu}" --nproc "${nproc}" --num_nodes "${num_nodes}" --python "${python}" "${exp}/train.log" \
        --config "${pretrain_config}" "${config_overrides[@]}" --data_root "${datadir}" --exp_dir "${exp}" --resume true --device "${device}"
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: ${exp}/upstream.pt (use it as upstream.name=eat upstream.path=${exp}/upstream.pt)"
    ${python} -m asdlib.bin.export_upstream --exp_dir "${exp}"
    ${python} -m asdlib.bin.plot_losses --out "${exp}/losses.png" "${exp}"
fi
