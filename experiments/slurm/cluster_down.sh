#!/usr/bin/env bash
# Stops the daemons that cluster_up.sh started, and only those: it reads the PIDs recorded in the state
# directory and never looks processes up by name. Order: slurmd, slurmctld, slurmdbd, mariadbd, munged.
# Each is sent TERM, given up to 15 s, then KILL. Running it again, or with nothing recorded, is harmless.
#
# Usage: cluster_down.sh [--cancel-jobs]
#   --cancel-jobs  first cancel every queued and running job (squeue + scancel --full)
#
# Environment:
#   LIT_MM_SLURM_STATE  state directory used by cluster_up.sh (default /var/lib/lit-mm-slurm)
set -Eeuo pipefail

SCRIPT_NAME=cluster_down
# shellcheck source=experiments/slurm/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
trap 'printf "[%s] ERROR: command failed (line %s): %s\n" "$SCRIPT_NAME" "$LINENO" "$BASH_COMMAND" >&2' ERR

STOP_ORDER=(slurmd slurmctld slurmdbd mariadbd munged)
TERM_GRACE_S=15

usage() {
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

cancel_jobs() {
    local jobs deadline
    if ! controller_answers; then
        say "jobs: controller not answering, nothing to cancel"
        return
    fi
    mapfile -t jobs < <(timeout 10 squeue -h -o '%A')
    if ((${#jobs[@]} == 0)); then
        say "jobs: none queued or running"
        return
    fi
    scancel --full "${jobs[@]}" || true
    say "jobs: cancelled ${#jobs[@]} (${jobs[*]})"
    # Give slurmd time to kill the job processes before it is stopped itself.
    deadline=$((SECONDS + TERM_GRACE_S))
    while [[ -n $(timeout 10 squeue -h -t RUNNING,COMPLETING -o '%A') ]]; do
        if ((SECONDS >= deadline)); then
            say "jobs: some still running or completing after ${TERM_GRACE_S} s"
            return
        fi
        sleep 0.25
    done
}

# Stops the daemon recorded in RECORD_DIR/NAME.pid, if that PID still is a NAME process, and drops the record.
stop_recorded() {
    local name=$1 record=$RECORD_DIR/$1.pid pid start deadline
    [[ -f $record ]] || return 0
    pid=$(tr -dc '0-9' <"$record")
    if ! pid_is_daemon "$pid" "$name"; then
        say "$name: recorded pid ${pid:-?} is no longer a $name process, nothing to stop"
        rm -f "$record"
        return
    fi
    start=$(now)
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TERM_GRACE_S))
    while pid_is_daemon "$pid" "$name"; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            say "$name: pid $pid ignored TERM for ${TERM_GRACE_S} s, sent KILL"
            break
        fi
        sleep 0.1
    done
    rm -f "$record"
    say "$name: stopped pid $pid in $(seconds_since "$start") s"
}

main() {
    local cancel=0 name start
    while (($# > 0)); do
        case $1 in
            --cancel-jobs) cancel=1 ;;
            -h | --help)
                usage
                return
                ;;
            *)
                usage >&2
                die "unknown argument: $1"
                ;;
        esac
        shift
    done
    start=$(now)
    if ((cancel)); then
        cancel_jobs
    fi
    if [[ ! -d $RECORD_DIR ]] || [[ -z $(ls -A "$RECORD_DIR") ]]; then
        say "no daemons recorded in $RECORD_DIR, nothing to stop"
        return
    fi
    for name in "${STOP_ORDER[@]}"; do
        stop_recorded "$name"
    done
    rmdir "$RECORD_DIR" 2>/dev/null || say "left unknown records in $RECORD_DIR: $(ls -A "$RECORD_DIR")"
    say "cluster down in $(seconds_since "$start") s"
}

main "$@"
