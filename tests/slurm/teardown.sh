#!/usr/bin/env bash
# Stop the Slurm daemons that tests/slurm/setup.sh started (recorded in $HTT_SLURM_STATE/started),
# and nothing else: a Slurm that was already running before the tests keeps running.
set -euo pipefail

STATE="${HTT_SLURM_STATE:-/run/htt-slurm-test}"
[ -f "$STATE/started" ] || exit 0

# stop in reverse order of starting (slurmd before slurmctld), each by its recorded pid
tac "$STATE/started" | while read -r daemon pid; do
    # only a process that still is that daemon (the pid may have been reused)
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$daemon" ]; then
        kill "$pid"
        for _ in $(seq 50); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        echo "stopped $daemon (pid $pid)"
    fi
done
rm -f "$STATE/started"
