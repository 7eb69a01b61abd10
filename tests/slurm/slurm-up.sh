#!/usr/bin/env bash
# Bring up a REAL single-node SLURM cluster on localhost, for tests/test_slurm.py
# and for trying profiles/slurm-test by hand.
#
#   sudo bash tests/slurm/slurm-up.sh      # idempotent; safe to run again
#   sudo bash tests/slurm/slurm-down.sh    # stops what this script started
#
# What it does (no systemd needed; daemons are started by hand):
#   * apt-get installs, only if missing: slurm-wlm (slurmctld + slurmd + client),
#     munge, slurmdbd, mariadb-server
#   * writes /etc/slurm/slurm.conf (node = `hostname -s`, CPUs/RealMemory from
#     `slurmd -C` at run time, one default partition `debug`, SlurmUser=root,
#     proctrack/linuxproc, task/none, select/cons_tres + CR_Core_Memory) and
#     /etc/slurm/slurmdbd.conf (accounting in a local MariaDB, so `sacct` works)
#   * starts munged (as user munge), mariadb, slurmdbd, then registers the
#     cluster, an account `opbreak` and user root with `sacctmgr -i`, then
#     slurmctld and slurmd (as root)
#   * waits (bounded by SLURM_UP_TIMEOUT, default 60 s) for the node to be idle
#
# Environment:
#   SLURM_UP_TIMEOUT   seconds to wait for each readiness check (default 60)
#   SLURM_NO_ACCOUNTING=1  skip slurmdbd/MariaDB (no sacct; the executor plugin
#                      then falls back to squeue for job status)
# Exits non-zero with a message naming the failing step and its log file.
set -euo pipefail

TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
NO_ACCT="${SLURM_NO_ACCOUNTING:-0}"
CLUSTER=opbreaktest
ACCOUNT=opbreak
PARTITION=debug
ETC=/etc/slurm
LOGDIR=/var/log/slurm
STATE=/var/lib/opbreak-slurm          # our bookkeeping: which daemons we started
DB_PASS=opbreak-slurm-test            # local-only MariaDB user, socket on localhost

die() { echo "slurm-up: ERROR: $*" >&2; exit 1; }
log() { echo "slurm-up: $*"; }

[ "$(id -u)" = 0 ] || die "must run as root (starts munged, slurmctld, slurmd)"

# ---------------------------------------------------------------- install ---
pkgs=()
command -v slurmctld >/dev/null 2>&1 || pkgs+=(slurmctld)
command -v slurmd    >/dev/null 2>&1 || pkgs+=(slurmd)
command -v sbatch    >/dev/null 2>&1 || pkgs+=(slurm-client)
command -v munged    >/dev/null 2>&1 || pkgs+=(munge)
if [ "$NO_ACCT" != 1 ]; then
  command -v slurmdbd >/dev/null 2>&1 || pkgs+=(slurmdbd)
  command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 \
    || pkgs+=(mariadb-server)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${pkgs[*]} and no apt-get"
  log "installing ${pkgs[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: keep the packages' postinst from trying to start services
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  rc=0
  { timeout 600 apt-get update -qq && \
    timeout 900 apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } || rc=$?
  [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || die "apt-get install ${pkgs[*]} failed (rc=$rc)"
fi

mkdir -p "$ETC" "$LOGDIR" "$STATE" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/slurm
touch "$STATE/started"

running() {  # running PIDFILE -> 0 if the pid in it is alive
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
mark_started() { grep -qx "$1" "$STATE/started" || echo "$1" >>"$STATE/started"; }
wait_for() {  # wait_for DESCRIPTION LOGFILE CMD...
  local what="$1" logf="$2"; shift 2
  local t=0
  until "$@" >/dev/null 2>&1; do
    t=$((t + 1))
    if [ "$t" -ge "$TIMEOUT" ]; then
      echo "slurm-up: ERROR: timed out after ${TIMEOUT}s waiting for $what" >&2
      [ -n "$logf" ] && [ -f "$logf" ] && { echo "--- last lines of $logf:" >&2; tail -n 30 "$logf" >&2; }
      exit 1
    fi
    sleep 1
  done
}

# ----------------------------------------------------------------- config ---
NODE="$(hostname -s)"
# `slurmd -C` prints this machine's NodeName=... CPUs=... RealMemory=... line.
hw="$(slurmd -C 2>/dev/null | grep '^NodeName=' | head -n1)" || true
[ -n "$hw" ] || die "'slurmd -C' did not report this node's hardware"
CPUS="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
SOCKETS="$(sed -n 's/.* SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")"
CORES="$(sed -n 's/.* CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")"
THREADS="$(sed -n 's/.* ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")"
MEM="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
[ -n "$CPUS" ] && [ -n "$MEM" ] || die "could not parse 'slurmd -C': $hw"
# leave a little memory headroom for the OS (5%, at most 2 GiB)
reserve=$((MEM / 20)); [ $reserve -gt 2048 ] && reserve=2048
MEM=$((MEM - reserve))

if [ "$NO_ACCT" = 1 ]; then
  ACCT_CONF="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
else
  ACCT_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
fi

new_conf="$(cat <<EOF
# Written by tests/slurm/slurm-up.sh (opbreak test cluster). Do not edit by hand.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=600
Waittime=0
$ACCT_CONF
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS SocketsPerBoard=${SOCKETS:-1} CoresPerSocket=${CORES:-$CPUS} ThreadsPerCore=${THREADS:-1} RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)"
conf_changed=0
if [ ! -f "$ETC/slurm.conf" ] || [ "$(cat "$ETC/slurm.conf")" != "$new_conf" ]; then
  printf '%s\n' "$new_conf" >"$ETC/slurm.conf"; conf_changed=1
  log "wrote $ETC/slurm.conf (node $NODE, CPUs=$CPUS, RealMemory=$MEM)"
fi

# ------------------------------------------------------------------ munge ---
if ! running /run/munge/munged.pid && ! pgrep -x munged >/dev/null; then
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null 2>&1; then mungekey -c -f -k /etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged || die "munged failed to start (see /var/log/munge/munged.log)"
  mark_started munged
fi
wait_for "munge to answer" /var/log/munge/munged.log bash -c 'munge -n | unmunge'

# ------------------------------------------------- mariadb + slurmdbd -------
if [ "$NO_ACCT" != 1 ]; then
  if ! mysqladmin --protocol=socket ping >/dev/null 2>&1; then
    log "starting mariadb"
    mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null \
      || die "mariadb-install-db failed"
    # setsid -f: own session, forked, no fd of ours kept (callers may capture our stdout)
    (cd / && setsid -f mysqld_safe --user=mysql >/var/log/opbreak-mariadb.log 2>&1 </dev/null)
    mark_started mariadb
    wait_for "mariadb" /var/log/opbreak-mariadb.log mysqladmin --protocol=socket ping
  fi
  mysql --protocol=socket -u root <<EOF || die "could not create the slurm database user in mariadb"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
  dbd_conf="# Written by tests/slurm/slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db"
  dbd_changed=0
  if [ ! -f "$ETC/slurmdbd.conf" ] || [ "$(cat "$ETC/slurmdbd.conf")" != "$dbd_conf" ]; then
    printf '%s\n' "$dbd_conf" >"$ETC/slurmdbd.conf"; dbd_changed=1
  fi
  chown root:root "$ETC/slurmdbd.conf"; chmod 600 "$ETC/slurmdbd.conf"
  if running /run/slurm/slurmdbd.pid && [ $dbd_changed = 1 ]; then
    kill "$(cat /run/slurm/slurmdbd.pid)"; sleep 2
  fi
  if ! running /run/slurm/slurmdbd.pid; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd || die "slurmdbd failed to start (see $LOGDIR/slurmdbd.log)"
    mark_started slurmdbd
  fi
  wait_for "slurmdbd to answer sacctmgr" "$LOGDIR/slurmdbd.log" sacctmgr -n show cluster
  # Associations: cluster, account, user root (all idempotent with -i)
  sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
  sacctmgr -n -P show account format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="opbreak tests" organization=opbreak >/dev/null \
    || die "sacctmgr add account failed"
  sacctmgr -n -P show assoc where user=root account="$ACCOUNT" format=user | grep -qx root \
    || sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" defaultaccount="$ACCOUNT" >/dev/null \
    || die "sacctmgr add user root failed"
fi

# ------------------------------------------------------ slurmctld, slurmd ---
if [ $conf_changed = 1 ]; then
  for d in slurmd slurmctld; do
    if running /run/slurm/$d.pid; then
      log "config changed: restarting $d"; kill "$(cat /run/slurm/$d.pid)"
      for _ in $(seq 20); do running /run/slurm/$d.pid || break; sleep 0.5; done
    fi
  done
fi
if ! running /run/slurm/slurmctld.pid; then
  log "starting slurmctld"
  /usr/sbin/slurmctld || die "slurmctld failed to start (see $LOGDIR/slurmctld.log)"
  mark_started slurmctld
fi
wait_for "slurmctld to answer" "$LOGDIR/slurmctld.log" scontrol ping
if ! running /run/slurm/slurmd.pid; then
  log "starting slurmd"
  /usr/sbin/slurmd || die "slurmd failed to start (see $LOGDIR/slurmd.log)"
  mark_started slurmd
fi

# ------------------------------------------------------------------- wait ---
node_state() { sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n1; }
t=0
while :; do
  st="$(node_state)"
  case "$st" in
    idle|mix|mixed|alloc|allocated) break ;;
    down*|drain*|drng*|fail*)
      # e.g. left DOWN by an earlier unclean stop: bring it back
      scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  t=$((t + 1))
  if [ $t -ge "$TIMEOUT" ]; then
    echo "slurm-up: ERROR: node $NODE not idle after ${TIMEOUT}s (state '${st:-none}')" >&2
    sinfo -N -l >&2 || true
    scontrol show node "$NODE" >&2 || true
    for f in slurmctld slurmd; do echo "--- tail $LOGDIR/$f.log" >&2; tail -n 20 "$LOGDIR/$f.log" >&2 || true; done
    exit 1
  fi
  sleep 1
done
log "ready: node $NODE is $st; partition $PARTITION; accounting $([ "$NO_ACCT" = 1 ] && echo off || echo "on (account $ACCOUNT)")"
sinfo
