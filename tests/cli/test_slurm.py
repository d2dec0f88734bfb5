"""The app on a real SLURM through ``--use-plugin`` (Nipype's SLURM plugin).

Needs a reachable scheduler with an idle node sharing this file system:
``.ci/run`` starts one on localhost with ``tools/local_slurm.sh`` (as root) and
exports ``SLURM_CONF``.  Elsewhere every test here skips with the reason.

Checked: outputs bit-identical to MultiProc's with the same ``--omp-nthreads``;
every job gets the CPUs its step declares (``scontrol show job``: ``NumCPUs``)
and a memory request; ``LOGNAME`` may be unset; the queue is polled at
Nipype's 2 s interval; a job killed at its time limit ends the app with exit
code 1, one ``<run> | <step> FAILED`` line with the scheduler's reason, and a
crash file holding what the scheduler reported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rumba_bids.cli.demo import make_demo_dataset

#: Grid of the phantom: a few thousand brain voxels, fitted in seconds.
SHAPE = (24, 28, 20)
SCRIPT = shutil.which("rumba-bids", path=str(Path(sys.executable).parent))


def _scheduler_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo/sbatch) on PATH; .ci/run starts tools/local_slurm.sh"
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no SLURM controller reachable"
    if states.returncode != 0:
        return f"no SLURM controller reachable: {states.stderr.strip().splitlines()[-1:]}"
    if not {"idle", "mix"} & set(states.stdout.split()):
        return f"no idle SLURM node (states: {' '.join(states.stdout.split()) or 'none'})"
    return None


PROBLEM = _scheduler_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    make_demo_dataset(root / "bids", n_subjects=1, n_sessions=1, seed=3, shape=SHAPE)
    shutil.rmtree(root / "bids" / "derivatives")
    # count the scheduler queries: a squeue on PATH that logs each call
    shim = root / "shim"
    shim.mkdir()
    real = shutil.which("squeue")
    (shim / "squeue").write_text(
        f'#!/bin/sh\necho "$(date +%s.%N)" >>"$SQUEUE_LOG"\nexec {real} "$@"\n'
    )
    (shim / "squeue").chmod(0o755)
    return root


def _app(root: Path, name: str, *extra, plugin_args=None, timeout=600):
    """Run the app (no LOGNAME, as in batch jobs and containers); return (process, out)."""
    out, work = root / f"out-{name}", root / f"work-{name}"
    args = [root / "bids", out, "participant", "--skip-bids-validation", "-w", work, *extra]
    if plugin_args is not None:
        plugin = root / f"{name}.yml"
        plugin.write_text(json.dumps({"plugin": "SLURM", "plugin_args": plugin_args}))
        args += ["--use-plugin", plugin]
    env = {k: v for k, v in os.environ.items() if k != "LOGNAME" and not k.endswith("_THREADS")}
    env.update(
        PATH=f"{root / 'shim'}:{env['PATH']}",
        SQUEUE_LOG=str(root / f"squeue-{name}.log"),
        NIPYPE_NO_ET="1",
        PYTHONWARNINGS="ignore",
    )
    launcher = [SCRIPT] if SCRIPT else [sys.executable, "-m", "rumba_bids.cli.run"]
    start = time.monotonic()
    done = subprocess.run(
        [*launcher, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    done.wall = time.monotonic() - start
    assert "Traceback" not in done.stderr, done.stderr
    return done, out, work


def _derivatives(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.glob("sub-*/**/dwi/*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _jobs(work: Path) -> dict[str, dict]:
    """``scontrol show job`` of every job the run submitted, by step name."""
    jobs = {}
    for out_file in work.rglob("batch/slurm-*.out"):
        job_id = out_file.stem.split("-")[1]
        shown = subprocess.run(
            ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=False
        ).stdout
        fields = dict(re.findall(r"(\w+)=(\S*)", shown))
        if fields:
            jobs[fields["JobName"].split(".")[0]] = fields
    return jobs


def test_slurm_gives_multiprocs_outputs_and_asks_for_each_steps_cpus(root):
    options = ["--n-iter", "30", "--nprocs", "2", "--omp-nthreads", "2"]
    slurm, out, work = _app(root, "slurm", *options, plugin_args={"sbatch_args": "--time=10"})
    assert slurm.returncode == 0, slurm.stderr
    multiproc, reference, _ = _app(root, "multiproc", *options)
    assert multiproc.returncode == 0, multiproc.stderr
    files = _derivatives(out)
    assert len(files) == 19 and files == _derivatives(reference)  # bit-identical
    assert "sub-01 | fit_rumba done" in slurm.stderr  # per-step lines as with MultiProc

    jobs = _jobs(work)
    assert {"check_gradients", "brain_mask", "estimate_response", "fit_rumba"} <= set(jobs)
    for step in ("brain_mask", "estimate_response", "fit_rumba"):  # n_procs = --omp-nthreads
        assert jobs[step]["NumCPUs"] == "2", (step, jobs[step])
    assert jobs["check_gradients"]["NumCPUs"] == "1"
    for step, fields in jobs.items():
        assert fields["MinMemoryNode"].endswith("M") and int(fields["MinMemoryNode"][:-1]) > 256
        assert fields["TimeLimit"] == "00:10:00", step  # the user's sbatch_args are kept
        assert fields["JobState"] == "COMPLETED", step

    calls = (root / "squeue-slurm.log").read_text().split()
    # one query per pending job per 2 s poll (one step runs at a time here); 0.05 s: ~20/s
    assert len(calls) <= slurm.wall / 2 + len(jobs), (len(calls), slurm.wall)


def test_a_job_killed_at_its_time_limit_is_reported(root):
    """The fit outlives its 1-minute limit: exit 1, one line naming run and step, crash file."""
    killed, out, _ = _app(
        root, "killed", "--n-iter", "1000000", "--omp-nthreads", "1",
        plugin_args={"sbatch_args": "--time=1"},
    )  # fmt: skip
    assert killed.returncode == 1, killed.stderr
    lines = killed.stderr.splitlines()
    assert any(line.endswith("sub-01 | fit_rumba FAILED") for line in lines), killed.stderr
    reason = next(line for line in lines if "SchedulerError" in line)
    assert re.search(
        r"  SchedulerError: SLURM job \d+ TIMEOUT \(TimeLimit\): .*TIME LIMIT", reason
    )
    assert "1 of 1 run(s) failed or were invalid (sub-01)" in lines[-1]
    crash_files = list(out.glob("sub-01/log/*/crash-*fit_rumba*.txt"))
    assert len(crash_files) == 1
    crash = crash_files[0].read_text()
    assert "JobState=TIMEOUT" in crash and "DUE TO TIME LIMIT" in crash
    assert "Node: rumba_bids_" in crash and crash.rstrip().endswith("could not be found.")
