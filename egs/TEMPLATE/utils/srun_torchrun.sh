#!/usr/bin/env bash
# Multi-node DDP inside one Slurm job (asd.sh stage 3 with --num_nodes > 1, run through $train_cmd):
#   utils/srun_torchrun.sh <num_nodes> <nproc_per_node> <torchrun script args: -m module args | script args>
# Starts one srun task per node; each runs torchrun with a c10d rendezvous on the job's first node.
# Why each srun option (docs/cluster.md, "Multi-node training"):
#   --export=ALL     conf/slurm.conf submits with `sbatch --export=PATH`, which leaves SLURM_EXPORT_ENV=PATH
#                    in the job; srun would obey it and the workers would lose what path.sh set
#                    (PYTHONPATH, OMP/MKL thread counts, LC_ALL, HF_HUB_OFFLINE).
#   --cpus-per-task  srun does not inherit the job's --cpus-per-task since Slurm 22.05.
# Rendezvous port: 29400 + SLURM_JOB_ID % 1000 (29400-30399), so two jobs whose first node is the same
# host do not collide; export ASDLIB_RDZV_PORT in path.sh to choose it.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 <num_nodes> <nproc_per_node> <torchrun script args ...>" >&2
    exit 2
fi
: "${SLURM_JOB_ID:?$0 must run inside a Slurm job (cmd_backend=slurm)}"
nnodes=$1
nproc=$2
shift 2
head=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n1)
port=${ASDLIB_RDZV_PORT:-$((29400 + SLURM_JOB_ID % 1000))}
cpus=()
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    cpus=(--cpus-per-task="${SLURM_CPUS_PER_TASK}")
    export SRUN_CPUS_PER_TASK="${SLURM_CPUS_PER_TASK}"
fi
echo "$0: ${nnodes} node(s) x ${nproc} process(es), rendezvous ${head}:${port}" >&2
exec srun --export=ALL --nodes="${nnodes}" --ntasks="${nnodes}" --ntasks-per-node=1 "${cpus[@]}" \
    torchrun --nnodes="${nnodes}" --nproc_per_node="${nproc}" --rdzv_backend=c10d \
    --rdzv_endpoint="${head}:${port}" --rdzv_id="${SLURM_JOB_ID}" "$@"
