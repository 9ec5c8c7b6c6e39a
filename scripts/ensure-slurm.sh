#!/usr/bin/env bash
# A single-node Slurm cluster on localhost for the slurm test tier: Debian's slurm-wlm + munge, with
# fake GPU types (GRES backed by empty files), started in the background and stopped by pid.
#
#   scripts/ensure-slurm.sh          install when missing (root), write the config, start, wait until up
#   scripts/ensure-slurm.sh stop     stop the daemons this script started (by their recorded pids)
#   scripts/ensure-slurm.sh env      print SLURM_CONF=<path> for the clients (sbatch, squeue, scontrol)
#
# Environment: ENVKIT_SLURM_DIR (config, logs, state, pids; default ${ENVKIT_STATE_DIR:-/tmp/envkit}/slurm),
# ENVKIT_SLURM_GPU_TYPES (default "h100 a100": one fake GPU of each type), ENVKIT_SLURM_WAIT_S (60).
# Idempotent: when the daemons run with this config, nothing is restarted.
# Exit status: 0 the node is up (idle, or busy with jobs), or this is not root and ENVKIT_REQUIRE_SLURM
# is not 1 (nothing done; the slurm tier skips); 3 it could not be made so.
#
# Settings are Slurm's own, documented in slurm.conf(5) https://slurm.schedmd.com/slurm.conf.html and
# gres.conf(5) https://slurm.schedmd.com/gres.conf.html; munged(8): https://github.com/dun/munge/wiki/Man-8-munged
set -euo pipefail

STATE_DIR="${ENVKIT_SLURM_DIR:-${ENVKIT_STATE_DIR:-/tmp/envkit}/slurm}"
GPU_TYPES="${ENVKIT_SLURM_GPU_TYPES:-h100 a100}"
WAIT_S="${ENVKIT_SLURM_WAIT_S:-60}"
CONF="${STATE_DIR}/slurm.conf"
export SLURM_CONF="$CONF"

say() { printf 'ensure-slurm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 3; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmrestd >/dev/null || missing+=(slurmrestd)
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# slurm.conf(5): NodeName's CPUs and RealMemory (MB) must not exceed what slurmd finds, or the node is
# drained; leave 512 MB for the system.
write_config() {
    local cpus mem gres features types=() type
    cpus="$(nproc)"
    mem="$(awk '/^MemTotal:/ {print int($2 / 1024) - 512}' /proc/meminfo)"
    read -r -a types <<<"$GPU_TYPES"
    mkdir -p "${STATE_DIR}/ctld" "${STATE_DIR}/spool" "${STATE_DIR}/gpu"
    gres="" features=""
    : >"${STATE_DIR}/gres.conf.new"
    for type in "${types[@]}"; do
        [[ "$type" =~ ^[a-z0-9_]+$ ]] || die "GPU type '${type}' must be lower-case letters, digits or _"
        # gres.conf(5) File=: a device file; an empty regular file stands in for a GPU that is not there.
        : >"${STATE_DIR}/gpu/${type}0"
        echo "NodeName=localhost Name=gpu Type=${type} File=${STATE_DIR}/gpu/${type}0" >>"${STATE_DIR}/gres.conf.new"
        gres+="${gres:+,}gpu:${type}:1"
        features+="${features:+,}${type}"
    done
    cat >"${CONF}.new" <<EOF
# Written by envkit's scripts/ensure-slurm.sh: one node on localhost for tests. See slurm.conf(5).
ClusterName=envkit
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${STATE_DIR}/ctld
SlurmdSpoolDir=${STATE_DIR}/spool
SlurmctldPidFile=${STATE_DIR}/slurmctld.pid
SlurmdPidFile=${STATE_DIR}/slurmd.pid
SlurmctldLogFile=${STATE_DIR}/slurmctld.log
SlurmdLogFile=${STATE_DIR}/slurmd.log
# No cgroups in a container: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# No slurmdbd: no accounting (sacct answers nothing; envkit reads scontrol and squeue instead).
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to scontrol for MinJobAge seconds. A job that is cancelled or past its
# limit gets SIGTERM, then SIGKILL KillWait seconds later (30, Slurm's default: time to clean up).
MinJobAge=600
KillWait=30
InactiveLimit=0
GresTypes=gpu
NodeName=localhost CPUs=${cpus} RealMemory=${mem} Gres=${gres} Feature=${features} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "${CONF}.new" "$CONF" && cmp -s "${STATE_DIR}/gres.conf.new" "${STATE_DIR}/gres.conf"; then
        rm -f "${CONF}.new" "${STATE_DIR}/gres.conf.new"
        return 1  # unchanged
    fi
    mv "${STATE_DIR}/gres.conf.new" "${STATE_DIR}/gres.conf"
    mv "${CONF}.new" "$CONF"
}

alive() {  # alive PIDFILE NAME: the pid in PIDFILE is a live process called NAME
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(tr -dc '0-9' <"$1")"
    [[ -n "$pid" && "$(cat "/proc/${pid}/comm" 2>/dev/null)" == "$2" ]]
}

start_munge() {
    local pidfile=/run/munge/munged.pid
    if alive "$pidfile" munged; then return 0; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    [[ -f /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
    cp "$pidfile" "${STATE_DIR}/munged.pid"  # ours to stop
}

start_daemons() {
    if ! alive "${STATE_DIR}/slurmctld.pid" slurmctld; then
        say "starting slurmctld (log: ${STATE_DIR}/slurmctld.log)"
        slurmctld -f "$CONF"
    fi
    if ! alive "${STATE_DIR}/slurmd.pid" slurmd; then
        say "starting slurmd"
        slurmd -f "$CONF" -N localhost
    fi
}

stop_daemons() {
    local name file pid
    for name in slurmd slurmctld munged; do
        file="${STATE_DIR}/${name}.pid"
        if alive "$file" "$name"; then
            pid="$(tr -dc '0-9' <"$file")"
            say "stopping ${name} (pid ${pid})"
            kill "$pid"
            for _ in $(seq 50); do [[ -d "/proc/${pid}" ]] || break; sleep 0.1; done
        fi
        [[ "$name" != munged ]] || rm -f "$file"
    done
}

# sinfo(1) node state: idle, or mix/alloc while jobs run; anything else (down*, drain, unk) is not up.
node_up() { [[ "$(sinfo -h -N -n localhost -o %t 2>/dev/null)" =~ ^(idle|mix|alloc)$ ]]; }

wait_up() {
    local waited=0
    until node_up; do
        ((waited < WAIT_S * 10)) || die "the node is not up after ${WAIT_S}s ($(sinfo -h -N -o '%t %E' 2>&1)); see ${STATE_DIR}/slurmctld.log and slurmd.log"
        sleep 0.1
        waited=$((waited + 1))
    done
    say "slurm is up: $(sinfo -h -N -o '%N %t %G')"
}

main() {
    case "${1:-start}" in
        env) echo "SLURM_CONF=${CONF}"; return 0 ;;
        stop) stop_daemons; return 0 ;;
        start) ;;
        *) die "usage: $0 [start|stop|env]" ;;
    esac
    if [[ "$(id -u)" != 0 ]]; then
        node_up && return 0
        # Without root nothing can be installed or started: the slurm tier skips, unless CI requires it.
        [[ "${ENVKIT_REQUIRE_SLURM:-}" == 1 ]] && die "Slurm is not up and this is not root; run as root"
        say "Slurm is not up and this is not root: tests/slurm will skip (ENVKIT_REQUIRE_SLURM=1 makes this an error)"
        return 0
    fi
    install_packages
    mkdir -p "$STATE_DIR"
    if write_config; then
        say "wrote ${CONF}"
        stop_daemons  # slurmd reads GRES only at start
    fi
    start_munge
    start_daemons
    wait_up
}

main "$@"
