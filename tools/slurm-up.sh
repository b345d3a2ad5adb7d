#!/usr/bin/env bash
# Starts a throwaway single-node Slurm (munged + slurmctld + slurmd, Debian's packages) whose
# every file lives in DIR, for tests/shard_slurm.rs. Needs root (slurmd runs jobs as any user).
#   tools/slurm-up.sh DIR      → prints SLURM_CONF=DIR/slurm.conf once the node is idle
#   tools/slurm-down.sh DIR    → stops exactly the daemons started here (by their pid files)
# Exit 3: the packages are not installed (`.ci/run` installs them: apt-get install slurmctld
# slurmd slurm-client munge). Any other failure prints the daemons' logs.
set -euo pipefail
DIR="$(realpath -m "${1:?usage: tools/slurm-up.sh DIR}")"
for b in munged slurmctld slurmd sbatch sinfo; do
  command -v "$b" >/dev/null || { echo "slurm-up: $b not installed" >&2; exit 3; }
done
mkdir -p "$DIR"/{state,spool,munge}
chmod 700 "$DIR/munge"
HOST="$(hostname -s)"
# A port pair of its own, so that a Slurm already on the machine is left alone.
PORT="${DDR_SLURM_PORT:-16817}"
# A munge key of our own: the packaged one is not readable by munged running as root otherwise
# than as its owner, and tests must not depend on the machine's key.
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=128 count=1 status=none
chmod 400 "$DIR/munge/munge.key"
munged --force --socket="$DIR/munge/munge.sock" --key-file="$DIR/munge/munge.key" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
  --seed-file="$DIR/munge/munged.seed"
cat > "$DIR/slurm.conf" <<CONF
ClusterName=ddrtest
SlurmctldHost=$HOST
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
# The node claims 4 CPUs whatever the machine has, so 3 one-CPU shards run at once on a 2-core CI
# machine too (config_overrides: slurmd trusts this line instead of draining a "smaller" node).
SlurmdParameters=config_overrides
NodeName=$HOST CPUs=4 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$DIR/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    echo "SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "slurm-up: the node did not become idle in 60 s" >&2
sinfo >&2 || true
tail -n 30 "$DIR"/*.log "$DIR"/munge/munged.log >&2 || true
exit 1
