#!/usr/bin/env bash
# Stops the single-node Slurm that tools/slurm-up.sh DIR started: the daemons named by its pid
# files, nothing else. Safe to run twice.
set -uo pipefail
DIR="$(realpath -m "${1:?usage: tools/slurm-down.sh DIR}")"
for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
  [ -f "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
done
exit 0
