"""Main-process CPU while the steps run (the orchestrator), and the 1 -> 2 core run.

    python benchmarks/orchestrator.py [--shape 72 72 48] [--n-iter 150] [--nprocs 1 2] [--keep DIR]

Writes a one-run demo dataset (``rumba-bids-demo --subjects 1 --sessions 1``),
then runs ``rumba-bids ... participant --nprocs N`` in this process for each N,
with ``execute`` (the Nipype graph) wrapped to read this process's own CPU time
(``getrusage(RUSAGE_SELF)``: the main process only) and its children's
(``RUSAGE_CHILDREN``: the worker processes).  Prints, per N: wall time of the
graph, main-process CPU seconds and share of one core, workers' CPU seconds,
and the scheduling passes of the MultiProc loop.  Run it with another checkout
first on ``PYTHONPATH`` to measure a baseline (the pass count is then absent).
Not a test: nothing here has a threshold.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(bids: Path, out: Path, nprocs: int, n_iter: int) -> dict:
    """Run the app once (in a child process, so that RUSAGE_CHILDREN is its own)."""
    code = """
import json, resource, sys, time
import rumba_bids.cli.run as run
try:
    import rumba_bids.cli.plugins as plugins
except ImportError:
    plugins = None
seen = {}
original = run.execute
def execute(workflow, settings, dwi_runs):
    if plugins is not None:
        make = plugins.make_plugin
        def make_plugin(*args):
            plugin = make(*args)
            seen["plugin"] = plugin
            return plugin
        plugins.make_plugin = make_plugin
    cpu = lambda who: sum(resource.getrusage(who)[:2])
    start = time.perf_counter()
    main0, kids0 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    try:
        return original(workflow, settings, dwi_runs)
    finally:
        seen.update(wall=time.perf_counter() - start, main=cpu(resource.RUSAGE_SELF) - main0,
                    workers=cpu(resource.RUSAGE_CHILDREN) - kids0)
run.execute = execute
code = run.main(sys.argv[1:])
seen["passes"] = getattr(seen.pop("plugin", None), "passes", None)
print("MODULE", run.__file__)
print("RESULT", json.dumps(seen))
sys.exit(code)
"""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f"work{nprocs}", ignore_errors=True)
    args = [str(bids), str(out), "participant", "--nprocs", str(nprocs), "--n-iter", str(n_iter)]
    args += ["--skip-bids-validation", "-w", str(out.parent / f"work{nprocs}")]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=out.parent,
    )
    total = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"rumba-bids failed ({done.returncode})")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    import json

    result = json.loads(line.removeprefix("RESULT "))
    result["total_wall"] = total
    result["module"] = next(
        (line.split()[-1] for line in done.stdout.splitlines() if line.startswith("MODULE ")), "?"
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(72, 72, 48))
    parser.add_argument("--n-iter", type=int, default=150)
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="directory to keep the dataset in")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="rumba-orchestrator-"))
    bids = root / "bids"
    if not bids.exists():
        demo = shutil.which("rumba-bids-demo", path=str(Path(sys.executable).parent))
        shape = [str(s) for s in args.shape]
        command = [demo, str(bids), "--subjects", "1", "--sessions", "1", "--shape", *shape]
        subprocess.run(command, check=True, capture_output=True)
    print(
        f"{'nprocs':>6} {'graph s':>8} {'main CPU s':>10} {'main %':>7} {'workers CPU s':>13} "
        f"{'passes':>6}"
    )
    for _ in range(args.repeat):
        for nprocs in args.nprocs:
            r = measure(bids, root / f"out{nprocs}", nprocs, args.n_iter)
            print(
                f"{nprocs:>6} {r['wall']:>8.1f} {r['main']:>10.2f} "
                f"{100 * r['main'] / r['wall']:>6.1f}% {r['workers']:>13.1f} "
                f"{r['passes'] if r['passes'] is not None else '-':>6}",
                flush=True,
            )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
