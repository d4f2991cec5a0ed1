# Shared by cluster_up.sh and cluster_down.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034  # the variables are used by the sourcing scripts

STATE_DIR=${LIT_MM_SLURM_STATE:-/var/lib/lit-mm-slurm}
# PIDs of the daemons that cluster_up.sh started; cluster_down.sh stops exactly these.
RECORD_DIR=$STATE_DIR/started
SLURM_CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)

say() {
    printf '[%s] %s\n' "$SCRIPT_NAME" "$*"
}

die() {
    printf '[%s] ERROR: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

now() {
    date +%s.%N
}

seconds_since() {
    awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.2f", end - start }'
}

# True when PID is a live (non-zombie) process whose name is NAME or NAME-<suffix>: the slurmctld binary is a
# Debian alternatives link to slurmctld-wlm, and an exact-or-dash match keeps "slurmd" from matching "slurmdbd".
pid_is_daemon() {
    local pid=$1 name=$2 fields stat comm
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    fields=$(ps -p "$pid" -o stat=,comm= 2>/dev/null) || return 1
    read -r stat comm <<<"$fields"
    [[ $stat != Z* ]] || return 1
    [[ $comm == "$name" || $comm == "$name"-* ]]
}

# Prints the PID stored in FILE when it belongs to a live NAME daemon; fails otherwise.
live_pid_from_file() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    pid_is_daemon "$pid" "$name" || return 1
    echo "$pid"
}

controller_answers() {
    command -v scontrol >/dev/null && [[ -f $SLURM_CONF ]] && timeout 10 scontrol ping 2>/dev/null | grep -q UP
}
