"""End-to-end benchmark of the BIDS-App on the default demo dataset.

    python benchmarks/app.py [--iterations N] [--keep DIR]

1. ``rumba-bids-demo`` writes the default dataset (2 subjects, 3 DWI runs).
2. ``rumba-bids ... participant --nprocs 1 --omp-nthreads 1``: every step runs one
   after the other, so the wall time is the sum of the stages.  The time of the
   RUMBA-SD fit is read from the Nipype results of the ``fit_rumba`` nodes; the
   rest (startup, indexing, validation, masking, response, SH, peaks, writing,
   scheduling) is "outside the fit", which must stay under 25 % of the total.
3. ``rumba-bids ... participant`` with the defaults (all CPUs): the end-to-end
   wall time a user sees.

Prints seconds per stage and the ratio; exits 1 when the outside share is >= 25 %.
There is no DIPY counterpart of the whole app (DIPY's RUMBA fit is compared in
``benchmarks/rumba_fit.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TARGET_OUTSIDE_SHARE = 0.25


def run(command, **kwargs) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, **kwargs)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed ({completed.returncode}): {' '.join(map(str, command))}")
    return elapsed


def stage_durations(work_dir: Path) -> dict[str, float]:
    """Seconds spent in each kind of node (summed over runs), from Nipype's results."""
    from nipype.utils.filemanip import loadpkl

    durations: dict[str, float] = defaultdict(float)
    for result_file in work_dir.rglob("result_*.pklz"):
        result = loadpkl(result_file)
        runtime = getattr(result, "runtime", None)
        duration = getattr(runtime, "duration", None) if runtime is not None else None
        if duration is not None:
            durations[result_file.parent.name] += float(duration)
    return dict(durations)


def script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: pip install -e . first")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=600, help="RUMBA-SD iterations")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--skip-default-run", action="store_true", help="only the sequential measurement"
    )
    args = parser.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="rumba_bids_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    bids = root / "bids"
    if not bids.exists():
        seconds = run([script("rumba-bids-demo"), bids])
        print(f"demo dataset written in {seconds:.1f} s")
    app = script("rumba-bids")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPUs available: {cpus}; load average {os.getloadavg()[0]:.1f}")

    sequential = root / "sequential"
    shutil.rmtree(sequential, ignore_errors=True)
    total = run(
        [app, bids, sequential / "out", "participant", "--nprocs", "1", "--omp-nthreads", "1",
         "--n-iter", str(args.iterations), "-w", sequential / "work"]
    )  # fmt: skip
    stages = stage_durations(sequential / "work")
    fit = stages.pop("fit_rumba", 0.0)
    in_nodes = sum(stages.values())
    other = total - fit - in_nodes
    print(f"\nsequential run (--nprocs 1 --omp-nthreads 1), {args.iterations} iterations:")
    print(f"  {'RUMBA-SD fit (3 runs)':44s} {fit:8.1f} s")
    for name, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"  {name:44s} {seconds:8.1f} s")
    print(f"  {'startup, indexing, validation, scheduling':44s} {other:8.1f} s")
    print(f"  {'total (wall)':44s} {total:8.1f} s")
    outside = total - fit
    share = outside / total
    verdict = "OK" if share < TARGET_OUTSIDE_SHARE else "TOO HIGH"
    print(
        f"  outside the fit: {outside:.1f} s = {100 * share:.1f} % of the total "
        f"(target < {100 * TARGET_OUTSIDE_SHARE:.0f} %: {verdict})"
    )

    if not args.skip_default_run:
        default = root / "default"
        shutil.rmtree(default, ignore_errors=True)
        wall = run(
            [app, bids, default / "out", "participant", "--n-iter", str(args.iterations),
             "-w", default / "work"]
        )  # fmt: skip
        print(f"\ndefault run (--nprocs {cpus}, --omp-nthreads 1): {wall:.1f} s end to end")
        print(f"speed-up over the sequential run: {total / wall:.2f}x")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if share < TARGET_OUTSIDE_SHARE else 1


if __name__ == "__main__":
    sys.exit(main())
