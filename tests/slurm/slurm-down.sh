#!/usr/bin/env bash
# Stop the daemons that tests/slurm/slurm-up.sh started (and only those),
# in reverse order, and park /etc/slurm/slurm.conf (moved to
# /var/lib/opbreak-slurm/slurm.conf.parked; slurm-up.sh writes it again):
# without a config the SLURM client fails at once instead of waiting ~9 s
# for a controller, so every later snakemake start (the SLURM executor
# plugin runs `scontrol show config` at import) is as fast as before.
# Leaves packages and the accounting database in place, so the next
# slurm-up.sh is fast. Always exits 0 unless not root.
set -uo pipefail
STATE=/var/lib/opbreak-slurm
[ "$(id -u)" = 0 ] || { echo "slurm-down: must run as root" >&2; exit 1; }
[ -f "$STATE/started" ] || { echo "slurm-down: nothing recorded as started"; exit 0; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  local name="$1" pf="$2" pid
  [ -s "$pf" ] || { echo "slurm-down: $name: no pidfile $pf"; return 0; }
  pid="$(cat "$pf")"
  if kill -0 "$pid" 2>/dev/null; then
    echo "slurm-down: stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    echo "slurm-down: $name did not stop in 15 s, sending KILL"
    kill -9 "$pid" 2>/dev/null
  fi
}

started="$(cat "$STATE/started")"
has() { grep -qx "$1" <<<"$started"; }
has slurmd    && stop_pidfile slurmd    /run/slurm/slurmd.pid
has slurmctld && stop_pidfile slurmctld /run/slurm/slurmctld.pid
has slurmdbd  && stop_pidfile slurmdbd  /run/slurm/slurmdbd.pid
if has mariadb; then
  echo "slurm-down: stopping mariadb"
  timeout 30 mysqladmin --protocol=socket shutdown 2>/dev/null || true
fi
if has munged; then
  stop_pidfile munged /run/munge/munged.pid
fi
rm -f "$STATE/started"
if [ -f /etc/slurm/slurm.conf ]; then
  mv -f /etc/slurm/slurm.conf "$STATE/slurm.conf.parked"
  echo "slurm-down: parked /etc/slurm/slurm.conf in $STATE (scontrol now fails fast)"
fi
exit 0
