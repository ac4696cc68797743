#!/usr/bin/env bash
# A one-node Slurm cluster on localhost from Debian packages, for the Slurm executor's
# integration test (tests/cli/slurm.rs) and for trying `cedm run --executor slurm` locally.
#
#   sudo scripts/slurm_local.sh start     # install (slurmctld slurmd slurm-client munge), configure, start
#   sudo scripts/slurm_local.sh stop
#   scripts/slurm_local.sh status
#
# No systemd and no cgroups needed (proctrack/linuxproc, task/none). Accounting: no slurmdbd;
# the job-completion log (jobcomp/filetxt) makes `sacct -c` work. batch_sched_delay=0 starts jobs
# at once. Idempotent: a running cluster is reconfigured; pidfiles are checked against /proc.
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

say() { echo "slurm_local: $*" >&2; }
die() { say "$*"; exit 1; }

alive() { # pidfile name
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

install_pkgs() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "installing Slurm needs root"
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null </dev/null \
    || die "apt-get could not install slurmctld slurmd slurm-client munge"
}

write_conf() {
  local hw
  hw="$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')"
  install -d /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
DependencyParameters=kill_invalid_depend
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.txt
MinJobAge=3600
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPort=6817
SlurmdPort=6818
NodeName=localhost NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  [ "$(id -u)" = 0 ] || die "starting Slurm needs root"
  install_pkgs
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  alive /run/munge/munged.pid munged || runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null || die "munge round trip failed"
  install -d -o slurm -g slurm /run/slurm /var/log/slurm /var/spool/slurmctld
  install -d /var/spool/slurmd
  write_conf
  if alive /run/slurm/slurmctld.pid slurmctld; then
    scontrol reconfigure || true
  else
    rm -f /var/log/slurm/jobcomp.txt   # job ids restart at 1 with -c: no stale records
    /usr/sbin/slurmctld -c
  fi
  alive /run/slurm/slurmd.pid slurmd || /usr/sbin/slurmd -N localhost
  for _ in $(seq 1 60); do
    if sinfo -h -N -n localhost -o %T 2>/dev/null | grep -qx idle; then
      say "cluster up: $(sinfo -h -o '%P %D %T' | head -1)"
      return 0
    fi
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
    sleep 0.5
  done
  die "the node did not become idle; see /var/log/slurm/"
}

stop() {
  local f comm
  for f in slurmd slurmctld munged; do
    case $f in munged) pf=/run/munge/munged.pid ;; *) pf=/run/slurm/$f.pid ;; esac
    comm=$f
    if alive "$pf" "$comm"; then kill -TERM "$(cat "$pf")" || true; fi
  done
  say "stopped"
}

status() {
  sinfo -h -o '%P %D %T' 2>/dev/null || { say "not running"; exit 1; }
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
