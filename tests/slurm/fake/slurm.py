#!/usr/bin/env python3
"""A stand-in for the Slurm commands the Snakemake Slurm executor calls (sbatch, squeue, sacct,
scontrol, sinfo, sacctmgr, sshare, scancel, srun, sstat), for tests that must not need or touch a
real Slurm.

Installed under each command's name in a directory put first on PATH. Every call is appended to
the JSON-lines file $FAKE_SLURM_LOG (command name and arguments). sbatch answers the next job id
and runs nothing; the status queries report every submitted job in the state $FAKE_SLURM_STATE
(default OUT_OF_MEMORY, the failure that makes Snakemake resubmit with more memory).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def submitted(log: Path) -> list[str]:
    """Job ids handed out so far (one per recorded sbatch call, numbered from 1001)."""
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [str(1000 + n) for n in range(1, 1 + sum(call[0] == "sbatch" for call in calls))]


def main() -> int:
    name, args = Path(sys.argv[0]).name, sys.argv[1:]
    log = Path(os.environ["FAKE_SLURM_LOG"])
    state = os.environ.get("FAKE_SLURM_STATE", "OUT_OF_MEMORY")
    with log.open("a") as stream:
        stream.write(json.dumps([name, args]) + "\n")
    if name == "sbatch":
        print(submitted(log)[-1])
    elif name == "sacct" and "--format=JobIdRaw,State" in args:
        print("\n".join(f"{job}|{state}" for job in submitted(log)))
    elif name == "squeue" and "--noheader" in args:
        print("\n".join(f"{job}|{state}" for job in submitted(log)))
    elif name == "scontrol":
        print("MaxArraySize            = 1001\nMinJobAge               = 300 sec")
    elif name in ("sacctmgr", "sshare"):
        print(os.environ.get("HTT_SLURM_ACCOUNT", ""))
    elif name == "sinfo":
        print("PARTITION AVAIL\nshort*    up\ngpu       up")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
