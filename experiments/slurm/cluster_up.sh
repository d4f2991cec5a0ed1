#!/usr/bin/env bash
# Brings up a single-node SLURM cluster on this machine without systemd: munged, slurmctld and slurmd, plus
# slurmdbd and MariaDB when accounting is asked for. Idempotent: installs only missing Debian packages, rewrites
# /etc/slurm/slurm.conf only when its content changed, starts only daemons that are not running, and records
# the PIDs of the daemons it started so that cluster_down.sh stops exactly those. Needs root.
#
# Environment:
#   LIT_MM_SLURM_STATE       state directory for logs, pid files, spool and saved state
#                            (default /var/lib/lit-mm-slurm)
#   LIT_MM_SLURM_ACCOUNTING  1 adds slurmdbd + MariaDB so that sacct and submitit job states work (default 0)
#   LIT_MM_SLURM_TIMEOUT     seconds to wait for the node to become idle, and for MariaDB and slurmdbd to
#                            answer (default 60)
set -Eeuo pipefail

SCRIPT_NAME=cluster_up
# shellcheck source=experiments/slurm/common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
trap 'printf "[%s] ERROR: command failed (line %s): %s\n" "$SCRIPT_NAME" "$LINENO" "$BASH_COMMAND" >&2' ERR

ACCOUNTING=${LIT_MM_SLURM_ACCOUNTING:-0}
TIMEOUT=${LIT_MM_SLURM_TIMEOUT:-60}
MUNGE_PID_FILE=/run/munge/munged.pid
SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
MARIADB_DIR=$STATE_DIR/mariadb
MARIADB_SOCKET=/run/mysqld/mysqld.sock
CONF_CHANGED=0
STARTED_PID=

case $ACCOUNTING in
    0 | 1) ;;
    *) die "LIT_MM_SLURM_ACCOUNTING must be 0 or 1, got '$ACCOUNTING'" ;;
esac
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "LIT_MM_SLURM_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"

show_log_tail() {
    local file=$1
    [[ -s $file ]] || return 0
    printf -- '--- last lines of %s ---\n' "$file" >&2
    tail -n 25 "$file" >&2
}

missing_packages() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -qx 'install ok installed' || echo "$package"
    done
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "$@" >>"$STATE_DIR/apt.log" 2>&1
}

install_packages() {
    local missing start
    mapfile -t missing < <(missing_packages "$@")
    if ((${#missing[@]} == 0)); then
        say "packages: $* already installed"
        return
    fi
    start=$(now)
    say "packages: installing ${missing[*]}"
    if ! apt_install "${missing[@]}"; then
        grep -Eq 'Unable to locate package|has no installation candidate|Failed to fetch|404 +Not Found' \
            "$STATE_DIR/apt.log" || { show_log_tail "$STATE_DIR/apt.log"; die "apt-get install ${missing[*]} failed"; }
        say "packages: package lists missing or stale, running apt-get update"
        apt-get update >>"$STATE_DIR/apt.log" 2>&1 || { show_log_tail "$STATE_DIR/apt.log"; die "apt-get update failed"; }
        apt_install "${missing[@]}" || { show_log_tail "$STATE_DIR/apt.log"; die "apt-get install ${missing[*]} failed"; }
    fi
    say "packages: installed ${missing[*]} in $(seconds_since "$start") s"
}

record_started() {
    local name=$1 pid=$2
    mkdir -p "$RECORD_DIR"
    echo "$pid" >"$RECORD_DIR/$name.pid"
}

# Waits for a freshly started daemon to write its pid file, then records the PID and sets STARTED_PID.
await_pid_file() {
    local name=$1 pid_file=$2 log=$3 pid deadline
    deadline=$((SECONDS + 15))
    until pid=$(live_pid_from_file "$pid_file" "$name"); do
        if ((SECONDS >= deadline)); then
            show_log_tail "$STATE_DIR/$name.stderr"
            show_log_tail "$log"
            die "$name did not start (no live process in $pid_file)"
        fi
        sleep 0.1
    done
    record_started "$name" "$pid"
    STARTED_PID=$pid
}

setup_munge() {
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 711 /var/lib/munge
    if [[ -s /etc/munge/munge.key ]]; then
        say "munge key: present"
    else
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        say "munge key: created /etc/munge/munge.key"
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 600 /etc/munge/munge.key
}

start_munged() {
    local pid
    if pid=$(live_pid_from_file "$MUNGE_PID_FILE" munged); then
        say "munged: already running (pid $pid)"
    else
        rm -f "$MUNGE_PID_FILE"
        runuser -u munge -- munged </dev/null >"$STATE_DIR/munged.stderr" 2>&1 ||
            { show_log_tail "$STATE_DIR/munged.stderr"; show_log_tail /var/log/munge/munged.log; die "munged failed to start"; }
        await_pid_file munged "$MUNGE_PID_FILE" /var/log/munge/munged.log
        say "munged: started (pid $STARTED_PID)"
    fi
    munge -n | unmunge >/dev/null || die "munge credential round trip (munge -n | unmunge) failed"
}

# The node line must carry the real hardware, otherwise slurmctld drains the node ("Low socket*core*thread count").
node_hardware() {
    local line field kept=()
    line=$(slurmd -C 2>/dev/null | head -n 1)
    for field in $line; do
        case $field in
            CPUs=* | Boards=* | SocketsPerBoard=* | CoresPerSocket=* | ThreadsPerCore=* | RealMemory=*) kept+=("$field") ;;
        esac
    done
    ((${#kept[@]} > 0)) || die "could not read the node hardware from 'slurmd -C' (got: $line)"
    echo "${kept[*]}"
}

slurm_conf_content() {
    local hardware=$1 accounting_lines
    if ((ACCOUNTING)); then
        accounting_lines="JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819"
    else
        accounting_lines="JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none"
    fi
    cat <<EOF
# Written by experiments/slurm/cluster_up.sh; rewritten on every bring-up.
ClusterName=localcluster
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
$accounting_lines
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

write_slurm_conf() {
    local hardware tmp
    hardware=$(node_hardware)
    tmp=$(mktemp)
    slurm_conf_content "$hardware" >"$tmp"
    if cmp -s "$tmp" "$SLURM_CONF"; then
        rm -f "$tmp"
        say "slurm.conf: unchanged ($SLURM_CONF)"
    else
        install -D -m 644 "$tmp" "$SLURM_CONF"
        rm -f "$tmp"
        CONF_CHANGED=1
        say "slurm.conf: written ($SLURM_CONF)"
    fi
}

start_mariadb() {
    local pid
    if pid=$(live_pid_from_file "$MARIADB_DIR/mariadbd.pid" mariadbd); then
        say "mariadbd: already running (pid $pid)"
        return
    fi
    install -d -o mysql -g mysql -m 750 "$MARIADB_DIR"
    install -d -o mysql -g mysql -m 755 /run/mysqld
    if [[ ! -d $MARIADB_DIR/data/mysql ]]; then
        mariadb-install-db --user=mysql --datadir="$MARIADB_DIR/data" --auth-root-authentication-method=socket \
            >"$STATE_DIR/mariadb-install-db.log" 2>&1 ||
            { show_log_tail "$STATE_DIR/mariadb-install-db.log"; die "mariadb-install-db failed"; }
        say "mariadb: initialised $MARIADB_DIR/data"
    fi
    rm -f "$MARIADB_DIR/mariadbd.pid"
    # mariadbd does not daemonize; setsid detaches it from this script's session.
    setsid mariadbd --no-defaults --user=mysql --datadir="$MARIADB_DIR/data" \
        --pid-file="$MARIADB_DIR/mariadbd.pid" --socket="$MARIADB_SOCKET" \
        --bind-address=127.0.0.1 --port=3306 --log-error="$MARIADB_DIR/mariadbd.log" \
        </dev/null >"$STATE_DIR/mariadbd.stderr" 2>&1 &
    await_pid_file mariadbd "$MARIADB_DIR/mariadbd.pid" "$MARIADB_DIR/mariadbd.log"
    say "mariadbd: started (pid $STARTED_PID)"
}

await_mariadb() {
    local deadline=$((SECONDS + TIMEOUT))
    until mariadb-admin --socket="$MARIADB_SOCKET" ping >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { show_log_tail "$MARIADB_DIR/mariadbd.log"; die "MariaDB did not answer within ${TIMEOUT} s"; }
        sleep 0.25
    done
}

# The database password lives in the state directory (mode 600) and is generated once.
database_password() {
    local file=$STATE_DIR/slurmdbd.password
    if [[ ! -s $file ]]; then
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$file")
    fi
    cat "$file"
}

setup_accounting_database() {
    local password=$1
    mariadb --socket="$MARIADB_SOCKET" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$password';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

write_slurmdbd_conf() {
    local password=$1 tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Written by experiments/slurm/cluster_up.sh; rewritten on every bring-up.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$password
LogFile=$STATE_DIR/slurmdbd.log
PidFile=$STATE_DIR/slurmdbd.pid
EOF
    if cmp -s "$tmp" "$SLURMDBD_CONF"; then
        rm -f "$tmp"
        say "slurmdbd.conf: unchanged ($SLURMDBD_CONF)"
    else
        # slurmdbd refuses a config file that others can read.
        install -D -m 600 "$tmp" "$SLURMDBD_CONF"
        rm -f "$tmp"
        say "slurmdbd.conf: written ($SLURMDBD_CONF)"
    fi
}

start_slurmdbd() {
    local pid deadline
    if pid=$(live_pid_from_file "$STATE_DIR/slurmdbd.pid" slurmdbd); then
        say "slurmdbd: already running (pid $pid)"
    else
        rm -f "$STATE_DIR/slurmdbd.pid"
        slurmdbd </dev/null >"$STATE_DIR/slurmdbd.stderr" 2>&1 ||
            { show_log_tail "$STATE_DIR/slurmdbd.stderr"; show_log_tail "$STATE_DIR/slurmdbd.log"; die "slurmdbd failed to start"; }
        await_pid_file slurmdbd "$STATE_DIR/slurmdbd.pid" "$STATE_DIR/slurmdbd.log"
        say "slurmdbd: started (pid $STARTED_PID)"
    fi
    deadline=$((SECONDS + TIMEOUT))
    until timeout 10 sacctmgr -n list cluster >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { show_log_tail "$STATE_DIR/slurmdbd.log"; die "slurmdbd did not answer within ${TIMEOUT} s"; }
        sleep 0.25
    done
    if timeout 10 sacctmgr -n -P list cluster format=cluster | grep -qx localcluster; then
        say "accounting: cluster localcluster registered"
    else
        timeout 10 sacctmgr -i add cluster localcluster >/dev/null
        say "accounting: registered cluster localcluster"
    fi
}

start_accounting() {
    local password
    start_mariadb
    await_mariadb
    password=$(database_password)
    setup_accounting_database "$password"
    write_slurmdbd_conf "$password"
    start_slurmdbd
}

# Switching accounting on or off needs a full restart of slurmctld, so refuse before touching anything.
check_running_accounting_type() {
    local pid wanted=accounting_storage/none running
    pid=$(live_pid_from_file "$STATE_DIR/slurmctld.pid" slurmctld) || return 0
    if ((ACCOUNTING)); then
        wanted=accounting_storage/slurmdbd
    fi
    running=$(timeout 10 scontrol show config 2>/dev/null | awk -F' *= *' '$1 == "AccountingStorageType" { print $2 }') || true
    if [[ -n $running && $running != "$wanted" ]]; then
        die "slurmctld (pid $pid) runs with $running but $wanted is wanted; run cluster_down.sh first"
    fi
}

start_slurmctld() {
    local pid
    if pid=$(live_pid_from_file "$STATE_DIR/slurmctld.pid" slurmctld); then
        if ((CONF_CHANGED)); then
            scontrol reconfigure
            say "slurmctld: already running (pid $pid), reconfigured with the new slurm.conf"
        else
            say "slurmctld: already running (pid $pid)"
        fi
        return
    fi
    rm -f "$STATE_DIR/slurmctld.pid"
    slurmctld </dev/null >"$STATE_DIR/slurmctld.stderr" 2>&1 ||
        { show_log_tail "$STATE_DIR/slurmctld.stderr"; show_log_tail "$STATE_DIR/slurmctld.log"; die "slurmctld failed to start"; }
    await_pid_file slurmctld "$STATE_DIR/slurmctld.pid" "$STATE_DIR/slurmctld.log"
    say "slurmctld: started (pid $STARTED_PID)"
}

start_slurmd() {
    local pid
    if pid=$(live_pid_from_file "$STATE_DIR/slurmd.pid" slurmd); then
        say "slurmd: already running (pid $pid)"
        return
    fi
    rm -f "$STATE_DIR/slurmd.pid"
    slurmd -N "$NODE" </dev/null >"$STATE_DIR/slurmd.stderr" 2>&1 ||
        { show_log_tail "$STATE_DIR/slurmd.stderr"; show_log_tail "$STATE_DIR/slurmd.log"; die "slurmd failed to start"; }
    await_pid_file slurmd "$STATE_DIR/slurmd.pid" "$STATE_DIR/slurmd.log"
    say "slurmd: started (pid $STARTED_PID)"
}

await_idle_node() {
    local start state deadline next_resume=0
    start=$(now)
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        state=$(timeout 10 sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1) || state=
        case $state in
            idle | mixed | allocated | completing)
                say "node $NODE: $state after $(seconds_since "$start") s"
                return
                ;;
            drain* | down* | fail*)
                # A node left drained or down by an earlier unclean stop does not come back by itself.
                if ((SECONDS >= next_resume)); then
                    scontrol update nodename="$NODE" state=resume 2>/dev/null &&
                        say "node $NODE: was $state, resumed"
                    next_resume=$((SECONDS + 5))
                fi
                ;;
        esac
        if ((SECONDS >= deadline)); then
            printf '[%s] node %s is "%s" after %s s; sinfo -R:\n' "$SCRIPT_NAME" "$NODE" "${state:-no answer}" "$TIMEOUT" >&2
            timeout 10 sinfo -R >&2 || true
            show_log_tail "$STATE_DIR/slurmctld.log"
            show_log_tail "$STATE_DIR/slurmd.log"
            die "node $NODE did not become idle within ${TIMEOUT} s"
        fi
        sleep 0.25
    done
}

main() {
    local start packages=(slurm-wlm munge)
    start=$(now)
    [[ $(id -u) == 0 ]] || die "must run as root (installs packages and starts system daemons)"
    install -d -m 755 "$STATE_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
    say "state directory: $STATE_DIR"
    if ((ACCOUNTING)); then
        packages+=(slurmdbd mariadb-server)
    fi
    install_packages "${packages[@]}"
    setup_munge
    start_munged
    check_running_accounting_type
    write_slurm_conf
    if ((ACCOUNTING)); then
        start_accounting
    fi
    start_slurmctld
    start_slurmd
    await_idle_node
    say "cluster up in $(seconds_since "$start") s (partition debug, node $NODE)"
}

main "$@"
