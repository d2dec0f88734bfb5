#!/usr/bin/env bash
# A one-node SLURM on localhost for the test suite (munge + slurmctld + slurmd).
#
#   tools/local_slurm.sh start [DIR]   install (apt, as root) if missing, write DIR/slurm.conf,
#                                      start the daemons, wait until the node is idle, and print
#                                      "export SLURM_CONF=DIR/slurm.conf" (eval it, or export it)
#   tools/local_slurm.sh stop [DIR]    stop the daemons this script started (by PID, from DIR/pids)
#   tools/local_slurm.sh status [DIR]  sinfo against DIR/slurm.conf
#
# DIR defaults to $LOCAL_SLURM_DIR or /tmp/rumba-local-slurm. Needs root (slurmd runs jobs as
# their user). Where a scheduler is already reachable (sinfo answers), start does nothing and
# prints nothing to export. Exit status of start: 0 when the node is idle, 1 otherwise.
set -euo pipefail

action=${1:-}
dir=${2:-${LOCAL_SLURM_DIR:-/tmp/rumba-local-slurm}}
conf=$dir/slurm.conf
pids=$dir/pids

log() { echo "local_slurm: $*" >&2; }

install_if_missing() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "slurm is not installed and cannot be installed here (needs root and apt-get)"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
    local host node
    host=$(hostname -s)
    # this host's CPUs, sockets and memory, as slurmd sees them
    node=$(slurmd -C | head -n 1)
    mkdir -p "$dir/run" "$dir/spool" "$dir/state" "$dir/log"
    cat >"$conf" <<EOF
ClusterName=rumbalocal
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=2
SlurmctldTimeout=30
SlurmdTimeout=60
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_for_pidfile() {  # file seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already running: not ours to stop
    fi
    mkdir -p /run/munge && chown munge:munge /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged
    wait_for_pidfile /run/munge/munged.pid 5
    echo "munged $(cat /run/munge/munged.pid)" >>"$pids"
}

node_idle() {
    SLURM_CONF=$conf sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'
}

start() {
    if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then
        log "a SLURM scheduler is already reachable; nothing started"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        log "not root: cannot start slurmd"
        return 1
    fi
    install_if_missing
    mkdir -p "$dir"
    if [ -s "$pids" ]; then
        log "$pids exists: stop the previous one first ($0 stop $dir)"
        return 1
    fi
    : >"$pids"
    write_conf
    start_munge
    /usr/sbin/slurmctld -c -f "$conf"
    wait_for_pidfile "$dir/run/slurmctld.pid" 10
    echo "slurmctld $(cat "$dir/run/slurmctld.pid")" >>"$pids"
    /usr/sbin/slurmd -f "$conf"
    wait_for_pidfile "$dir/run/slurmd.pid" 10
    echo "slurmd $(cat "$dir/run/slurmd.pid")" >>"$pids"
    local i
    for ((i = 0; i < 60; i++)); do
        if node_idle; then
            log "node idle after $((i / 2)) s (SLURM_CONF=$conf)"
            echo "export SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.5
    done
    log "the node did not become idle; see $dir/log/"
    return 1
}

stop() {
    [ -f "$pids" ] || return 0
    local name pid
    # reverse order: slurmd, slurmctld, then munged
    tac "$pids" | while read -r name pid; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" && log "stopped $name ($pid)"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
    rm -f "$pids"
}

case $action in
    start) start ;;
    stop) stop ;;
    status) SLURM_CONF=$conf sinfo ;;
    *) echo "usage: $0 start|stop|status [DIR]" >&2; exit 64 ;;
esac
