#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting, from Debian's packages, for the SLURM test.
#
#   slurm_cluster.sh start [STATE_DIR]   install missing packages (apt-get), write the configs and start
#                                        munged, mariadbd, slurmdbd, slurmctld and slurmd; idempotent: a
#                                        daemon whose recorded PID is alive is left running
#   slurm_cluster.sh stop  [STATE_DIR]   stop, by the PIDs recorded at start, every daemon this script started
#
# STATE_DIR (default /tmp/aedissect-slurm) holds spool, logs, the database and pids/*.pid. The configs go to
# /etc/slurm/{slurm,slurmdbd}.conf, where every SLURM command looks (SLURM_CONF is no way round it: the
# executor plugin's job step drops SLURM_* variables before its inner srun); a slurm.conf this script did not
# write is never overwritten, and stop removes ours. Needs root (Debian 12, slurm-wlm 22.05). No systemd here: apt-get starts no daemon (policy-rc.d forbids it), so we start them.
# Accounting is slurmdbd + MariaDB, so that `sacct` (and the executor plugin's default status query) works.
set -euo pipefail

ACTION=${1:-start}
STATE=${2:-${AEDISSECT_SLURM_DIR:-/tmp/aedissect-slurm}}
PIDS=$STATE/pids
DB_PORT=${AEDISSECT_SLURM_DB_PORT:-3307}   # not 3306, so a site's own MariaDB is never touched
DBD_PORT=${AEDISSECT_SLURM_DBD_PORT:-6829} # slurmdbd; slurmctld/slurmd use 6817/6818
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
CONF_DIR=/etc/slurm
MARKER="# written by aedissect tests/slurm_cluster.sh"
HOST=$(hostname -s)

log() { echo "[slurm_cluster] $*" >&2; }

# A PID counts as running when /proc/PID exists and its state is not Z (zombies are reaped slowly here).
alive() {
    local pid=$1 state
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

gone() { ! alive "$1"; }

recorded() { [[ -s $PIDS/$1.pid ]] && cat "$PIDS/$1.pid" || true; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for ((i = 0; i < limit * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    log "timed out after ${limit}s waiting for $what"
    return 1
}

# Record the PID a daemon wrote into its own pid file (they daemonize themselves).
record_from_pidfile() { # record_from_pidfile NAME PIDFILE
    local name=$1 pidfile=$2
    wait_for 30 "$name to write $pidfile" test -s "$pidfile"
    local pid
    pid=$(tr -d '[:space:]' <"$pidfile")
    wait_for 5 "$name (pid $pid) to be running" alive "$pid"
    echo "$pid" >"$PIDS/$name.pid"
    log "$name running, pid $pid"
}

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        log "missing packages ${missing[*]} and cannot install them (needs root and apt-get)"
        exit 3
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_configs() {
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$STATE"/{spool/ctld,spool/d,log,run} "$CONF_DIR"
    chown -R slurm:slurm "$STATE"/spool "$STATE"/log
    for name in slurm.conf slurmdbd.conf; do
        if [[ -e $CONF_DIR/$name ]] && ! grep -qxF "$MARKER" "$CONF_DIR/$name"; then
            log "$CONF_DIR/$name exists and was not written by this script; not touching a site's SLURM"
            exit 4
        fi
    done
    cat >"$CONF_DIR/slurm.conf" <<EOF
$MARKER
# one node, this machine; state in $STATE
ClusterName=aedissect
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MailProg=/bin/true
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStoreFlags=job_comment
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    # slurmdbd.conf must be private to SlurmUser
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
$MARKER
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=aedissect
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

start_munge() {
    if alive "$(recorded munged)"; then return 0; fi
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "a munged not started by this script is running; using it (and not stopping it)"
        return 0
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- /usr/sbin/mungekey --create
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force
    record_from_pidfile munged /run/munge/munged.pid
    wait_for 10 "munge to answer" bash -c 'munge -n | unmunge'
}

start_mariadb() {
    if alive "$(recorded mariadbd)"; then return 0; fi
    local datadir=$STATE/mysql
    if ! runuser -u mysql -- test -x "$STATE"; then
        log "user mysql cannot enter $STATE (a parent folder is private): use a STATE_DIR it can reach"
        exit 5
    fi
    if [[ ! -d $datadir/mysql ]]; then
        mkdir -p "$datadir"
        chown mysql:mysql "$datadir"
        mysql_install_db --no-defaults --user=mysql --datadir="$datadir" --auth-root-authentication-method=socket \
            >"$STATE/log/mysql_install_db.log" 2>&1 || {
            log "mysql_install_db failed:"
            tail -20 "$STATE/log/mysql_install_db.log" >&2
            exit 5
        }
    fi
    mkdir -p "$STATE/mysqlrun"
    chown mysql:mysql "$STATE/mysqlrun"
    rm -f "$STATE/mysqlrun/mariadbd.pid"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$datadir" --port="$DB_PORT" \
        --bind-address=127.0.0.1 --socket="$STATE/mysqlrun/mysqld.sock" --pid-file="$STATE/mysqlrun/mariadbd.pid" \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --log-error="$STATE/log/mariadb.err" </dev/null >/dev/null 2>&1 &
    record_from_pidfile mariadbd "$STATE/mysqlrun/mariadbd.pid"
    wait_for 30 "mariadb to accept connections" mariadb --no-defaults -S "$STATE/mysqlrun/mysqld.sock" -u root -e 'SELECT 1'
    mariadb --no-defaults -S "$STATE/mysqlrun/mysqld.sock" -u root <<'EOF'
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'aedissect';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'aedissect';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurm_daemon() { # start_slurm_daemon NAME PIDFILE COMMAND...
    local name=$1 pidfile=$2
    shift 2
    if alive "$(recorded "$name")"; then return 0; fi
    rm -f "$pidfile"
    "$@"
    record_from_pidfile "$name" "$pidfile"
}

node_idle() { sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'; }

start() {
    install_packages
    mkdir -p "$PIDS"
    chmod 755 "$STATE"
    write_configs
    start_munge
    start_mariadb
    start_slurm_daemon slurmdbd "$STATE/run/slurmdbd.pid" /usr/sbin/slurmdbd
    wait_for 30 "slurmdbd to answer" sacctmgr -n list cluster
    # register the cluster before slurmctld connects, so that its jobs are accounted from the first one
    sacctmgr -n list cluster format=cluster | grep -qw aedissect || sacctmgr -i add cluster aedissect >/dev/null
    start_slurm_daemon slurmctld "$STATE/run/slurmctld.pid" /usr/sbin/slurmctld
    start_slurm_daemon slurmd "$STATE/run/slurmd.pid" /usr/sbin/slurmd
    wait_for 60 "node $HOST to be idle in sinfo" node_idle
    log "cluster up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
}

stop_one() {
    local name=$1 pid
    pid=$(recorded "$name")
    [[ -n $pid ]] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for 30 "$name (pid $pid) to exit" gone "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name.pid"
}

stop() {
    [[ -d $PIDS ]] || { log "nothing recorded under $PIDS"; return 0; }
    for name in slurmd slurmctld slurmdbd mariadbd munged; do stop_one "$name"; done
    for name in slurm.conf slurmdbd.conf; do
        if [[ -e $CONF_DIR/$name ]] && grep -qxF "$MARKER" "$CONF_DIR/$name"; then rm -f "$CONF_DIR/$name"; fi
    done
}

case $ACTION in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop [STATE_DIR]" >&2
    exit 2
    ;;
esac
