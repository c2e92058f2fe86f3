# shellcheck shell=bash
# Shared by every recipe through a symlink; replace the link with a copy for site-specific launcher options.
# Job launchers (docs/design.md §6). Switch every stage to the Slurm cluster with: cmd_backend=slurm ./run.sh
cmd_backend="${cmd_backend:-local}"
case "${cmd_backend}" in
    local)
        export train_cmd="utils/local.sh"
        export extract_cmd="utils/local.sh"
        export score_cmd="utils/local.sh"
        ;;
    slurm)
        export train_cmd="utils/slurm.sh --config conf/slurm.conf"
        export extract_cmd="utils/slurm.sh --config conf/slurm.conf"
        export score_cmd="utils/slurm.sh --config conf/slurm.conf"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (use local or slurm)" >&2
        return 1
        ;;
esac
