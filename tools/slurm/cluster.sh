#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for testing utils/slurm.sh (and CI).
#
# Usage: tools/slurm/cluster.sh {install|start|check|status|stop}
#   install  apt-get install slurm-wlm and munge (skipped when already installed)
#   start    install, then start munged, slurmctld and slurmd; wait until the node is idle
#   check    run a trivial 2-task array with `sbatch --wait` and verify its output
#   status   show the daemons' pids and `sinfo`
#   stop     stop the daemons this script started, by the pids in their pid files
#
# Environment:
#   ASDLIB_SLURM_DIR  directory for state, spool, pid and log files (default /tmp/asdlib-slurm)
#   ASDLIB_SLURM_MEM  RealMemory of the node in MB (default: 90% of MemTotal)
#
# Needs root and no systemd (see docs/cluster.md). It writes /etc/slurm/slurm.conf
# (marked as ours; it refuses to overwrite a slurm.conf it did not write) and /etc/munge/munge.key
# (only when missing). The daemons are never stopped by name, only by the pids recorded here.
set -euo pipefail

readonly state_dir="${ASDLIB_SLURM_DIR:-/tmp/asdlib-slurm}"
readonly slurm_conf=/etc/slurm/slurm.conf
readonly marker="# Written by asdlib tools/slurm/cluster.sh"
readonly munge_key=/etc/munge/munge.key
readonly munged_pidfile=/run/munge/munged.pid

log() {
    echo "cluster.sh: $*" >&2
}

die() {
    log "error: $*"
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"
}

# True if the pid in file $1 names a live process.
pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid="$(cat "$1")"
    [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null
}

install_packages() {
    need_root
    if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null; then
        log "slurm-wlm and munge already installed"
        return 0
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y slurm-wlm munge
}

setup_munge() {
    if [ ! -s "${munge_key}" ]; then
        log "creating ${munge_key}"
        install -d -m 700 -o munge -g munge /etc/munge
        dd if=/dev/urandom of="${munge_key}" bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge "${munge_key}"
    chmod 700 /etc/munge
    chmod 400 "${munge_key}"
    install -d -o munge -g munge /run/munge /var/log/munge /var/lib/munge
}

start_munge() {
    if pid_alive "${munged_pidfile}"; then
        log "munged already running (pid $(cat "${munged_pidfile}"))"
    else
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged
        # Remember that we started it, so `stop` only stops a munged of ours.
        cp "${munged_pidfile}" "${state_dir}/munged.pid"
    fi
    munge -n | unmunge >/dev/null || die "munge does not work: see /var/log/munge/munged.log"
}

# Write slurm.conf; returns 0 if it changed, 1 if it was already up to date.
write_slurm_conf() {
    local host cpus mem_mb
    host="$(hostname -s)"
    # GNU nproc honours OMP_NUM_THREADS (path.sh sets it to 1): count the CPUs without it.
    cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
    mem_mb="${ASDLIB_SLURM_MEM:-$(awk '/^MemTotal:/ {print int($2 * 0.9 / 1024)}' /proc/meminfo)}"
    if [ -e "${slurm_conf}" ] && ! grep -qF "${marker}" "${slurm_conf}"; then
        die "${slurm_conf} exists and was not written by this script; move it away to use the test cluster"
    fi
    mkdir -p /etc/slurm "${state_dir}/state" "${state_dir}/spool" "${state_dir}/log"
    cat >"${slurm_conf}.tmp" <<EOF
${marker} (single-node test cluster; state under ${state_dir})
ClusterName=asdlib
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=${state_dir}/state
SlurmdSpoolDir=${state_dir}/spool
SlurmctldPidFile=${state_dir}/slurmctld.pid
SlurmdPidFile=${state_dir}/slurmd.pid
SlurmctldLogFile=${state_dir}/log/slurmctld.log
SlurmdLogFile=${state_dir}/log/slurmd.log
# Without a default, a job that asks for no memory gets the whole node and runs alone.
DefMemPerCPU=1024
# sbatch --wait polls every 2 s only while 2 s < MinJobAge/2 (else 8 s, then 32 s): keep test runs quick.
MinJobAge=4
# Start batch jobs right at submission instead of up to 3 s later.
SchedulerParameters=batch_sched_delay=0
NodeName=${host} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "${slurm_conf}.tmp" "${slurm_conf}"; then
        rm -f "${slurm_conf}.tmp"
        return 1
    fi
    mv -f "${slurm_conf}.tmp" "${slurm_conf}"
}

wait_idle() {
    local i state
    for i in $(seq 60); do
        state="$(sinfo -h -o %T 2>/dev/null || true)"
        if [ "${state}" = idle ]; then
            log "node idle after ${i} s"
            return 0
        fi
        sleep 1
    done
    die "node not idle after 60 s (sinfo says '${state}'); see ${state_dir}/log/"
}

start_cluster() {
    need_root
    install_packages
    mkdir -p "${state_dir}"
    setup_munge
    start_munge
    if write_slurm_conf && pid_alive "${state_dir}/slurmctld.pid"; then
        log "${slurm_conf} changed: restarting slurmd and slurmctld"
        stop_pidfile "${state_dir}/slurmd.pid"
        stop_pidfile "${state_dir}/slurmctld.pid"
    fi
    if pid_alive "${state_dir}/slurmctld.pid"; then
        log "slurmctld already running (pid $(cat "${state_dir}/slurmctld.pid"))"
    else
        log "starting slurmctld"
        /usr/sbin/slurmctld
    fi
    if pid_alive "${state_dir}/slurmd.pid"; then
        log "slurmd already running (pid $(cat "${state_dir}/slurmd.pid"))"
    else
        log "starting slurmd"
        /usr/sbin/slurmd
    fi
    wait_idle
}

check_cluster() {
    local dir i
    dir="$(mktemp -d)"
    cat >"${dir}/job.sh" <<'END'
#!/bin/bash
echo "task ${SLURM_ARRAY_TASK_ID}"
END
    sbatch --wait --array=1-2 -o "${dir}/log.%a" -D "${dir}" "${dir}/job.sh" >/dev/null \
        || die "sbatch --wait failed; logs in ${dir}"
    for i in 1 2; do
        grep -qx "task ${i}" "${dir}/log.${i}" || die "task ${i} wrote no output; see ${dir}"
    done
    rm -r "${dir}"
    log "ok: sbatch --wait ran a 2-task array"
}

status_cluster() {
    local name
    for name in slurmctld slurmd munged; do
        if pid_alive "${state_dir}/${name}.pid"; then
            echo "${name}: running (pid $(cat "${state_dir}/${name}.pid"))"
        else
            echo "${name}: not running (from ${state_dir})"
        fi
    done
    sinfo
}

# Send TERM to the pid in file $1 and wait up to 20 s for it to exit.
stop_pidfile() {
    local pidfile="$1" pid i
    if ! pid_alive "${pidfile}"; then
        rm -f "${pidfile}"
        return 0
    fi
    pid="$(cat "${pidfile}")"
    log "stopping pid ${pid} (${pidfile})"
    kill -TERM "${pid}"
    for i in $(seq 20); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 1
    done
    kill -0 "${pid}" 2>/dev/null && die "pid ${pid} still alive 20 s after SIGTERM"
    rm -f "${pidfile}"
}

stop_cluster() {
    need_root
    stop_pidfile "${state_dir}/slurmd.pid"
    stop_pidfile "${state_dir}/slurmctld.pid"
    # Only a munged this script started (its pid copied into the state dir at start).
    if [ -s "${state_dir}/munged.pid" ] && [ -s "${munged_pidfile}" ] \
        && [ "$(cat "${state_dir}/munged.pid")" = "$(cat "${munged_pidfile}")" ]; then
        stop_pidfile "${state_dir}/munged.pid"
    else
        rm -f "${state_dir}/munged.pid"
    fi
}

case "${1:-}" in
    install) install_packages ;;
    start) start_cluster ;;
    check) check_cluster ;;
    status) status_cluster ;;
    stop) stop_cluster ;;
    *)
        echo "Usage: $0 {install|start|check|status|stop}" >&2
        exit 2
        ;;
esac
