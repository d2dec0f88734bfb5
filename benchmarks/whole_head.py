"""Whole-head RUMBA-SD fit: wall time, CPU seconds, peak RSS, 1 -> 2 threads, vs DIPY.

Usage::

    python benchmarks/whole_head.py                 # 600 iterations, every run (long)
    python benchmarks/whole_head.py --iterations 5 20 --repeats 2   # per-iteration slope

The series is the demo's whole head (``rumba-bids-demo --shape 96 96 60``: 74
volumes, 10 b0 + 64 at b=2000, int16 NIfTI), masked by ``median_otsu`` as the
app does (about 224,000 voxels).  Each fit runs in its own process through
:func:`rumba_bids.interfaces.rumba.fit_rumba_files` (the FitRumba node: the
series as nibabel loads it, in Fortran order), voxel-wise and with TV, on 1
and 2 threads; the process reports its wall time, CPU seconds (user + system)
and peak RSS (VmHWM), next to :func:`rumba_bids.core.memory.process_bytes`.

With two iteration counts ``--iterations A B``, the cost of one iteration is
the slope ``(t_B - t_A) / (B - A)`` of the time spent in the iteration itself
(``_iterate_plain`` / ``_iterate_tv``, wall and CPU of all threads; reading
and writing about 2 GB per fit vary with the page cache and are left out), and
the 600-iteration figures are the whole process's fixed time plus 600 of them
(marked ``*``).  The ratios
(TV / voxel-wise, 1 / 2 threads, CPU at 2 / at 1 thread, DIPY / ours) are
taken within one repeat, where the two modes of one thread count run back to
back (the one run first alternating between repeats, so that the host's drift
does not favour either); the spread over repeats is printed.  DIPY's
voxel-wise fit is timed on a subset of the same voxels, its TV fit on a
20x20x20 block of the head; both as microseconds per voxel-iteration.  The
"floor" is three (n_volumes x n_sphere+2) float32 GEMMs per voxel-iteration
at the single-thread GEMM throughput measured in the same run (as in
``benchmarks/rumba_fit.py``; the antipodal folding halves the real products).
The other stages of a run (tensor, SH, peaks) are timed once on the same head.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys, time
from rumba_bids.interfaces.rumba import fit_rumba_files, memory_model, values_itemsize
from rumba_bids.core.memory import process_bytes
import nibabel as nib
from rumba_bids.core import iteration as _rumba
dwi, bval, bvec, response, mask, out, mode, threads, n_iter = sys.argv[1:10]
# the iterations alone (no reading, normalising, writing), wall and CPU of all threads
timed = {"wall": 0.0, "cpu": 0.0}
def _timing(iterate):
    def wrapped(*args, **kwargs):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            return iterate(*args, **kwargs)
        finally:
            timed["wall"] += time.perf_counter() - wall0
            timed["cpu"] += time.process_time() - cpu0
    return wrapped
_rumba._iterate_plain = _timing(_rumba._iterate_plain)
_rumba._iterate_tv = _timing(_rumba._iterate_tv)
start = time.perf_counter()
fit_rumba_files(dwi, bval, bvec, response, out, mask_file=mask,
                fit="voxelwise" if mode == "voxelwise" else "global",
                use_tv=mode == "tv", n_iter=int(n_iter), n_threads=int(threads))
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
image = nib.load(dwi)
n_vox = int(nib.load(mask).get_fdata().astype(bool).sum())
model = memory_model(image.shape[3], bvals=[float(b) for b in open(bval).read().split()],
                     fit="voxelwise" if mode == "voxelwise" else "global", use_tv=mode == "tv")
model.n_threads = int(threads)
estimate = process_bytes(model, image.shape, values_itemsize=values_itemsize(image),
                         n_voxels=n_vox)
print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": hwm,
                  "iter_wall": timed["wall"], "iter_cpu": timed["cpu"],
                  "estimate": estimate, "n_voxels": n_vox}))
"""


def make_dataset(root: Path, shape):
    import nibabel as nib

    from rumba_bids.core.head_phantom import demo_gradient_table, make_head_phantom
    from rumba_bids.core.masking import median_otsu

    gtab = demo_gradient_table(n_b0=10, n_dirs=64, bvals=(2000.0,))
    phantom = make_head_phantom(gtab, shape=shape, rng=np.random.default_rng([0, 1, 1]))
    data = np.clip(np.round(phantom.signal), 0, np.iinfo(np.int16).max).astype(np.int16)
    _, mask = median_otsu(data[..., gtab.b0s_mask].mean(axis=-1))
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(root / "dwi.nii.gz"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), str(root / "mask.nii.gz"))
    np.savetxt(root / "dwi.bval", gtab.bvals[None], fmt="%g")
    np.savetxt(root / "dwi.bvec", gtab.bvecs.T, fmt="%.8f")
    (root / "response.txt").write_text("1.7e-3 0.2e-3 0.2e-3\n")
    return gtab, data, mask


def load_dataset(root: Path):
    import nibabel as nib

    from rumba_bids.core.gradients import GradientTable

    gtab = GradientTable(np.loadtxt(root / "dwi.bval"), np.loadtxt(root / "dwi.bvec").T)
    data = np.asanyarray(nib.load(str(root / "dwi.nii.gz")).dataobj)
    mask = np.asanyarray(nib.load(str(root / "mask.nii.gz")).dataobj).astype(bool)
    return gtab, data, mask


def run_fit(root: Path, mode: str, threads: int, n_iter: int) -> dict:
    out = root / f"out-{mode}-{threads}-{n_iter}"
    out.mkdir(exist_ok=True)
    files = [str(root / n) for n in ("dwi.nii.gz", "dwi.bval", "dwi.bvec", "response.txt")]
    argv = [*files, str(root / "mask.nii.gz"), str(out), mode, str(threads), str(n_iter)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False
    )
    # the outputs (1.6 GB of fODF per whole-head fit) are not needed: only the figures
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def gemm_floor_us(n_rows, n_volumes, n_columns) -> float:
    """Microseconds of three (n_volumes x n_columns) float32 GEMMs per row, one thread."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((n_rows, n_volumes), dtype=np.float32)
    b = rng.random((n_volumes, n_columns), dtype=np.float32)
    out = np.empty((n_rows, n_columns), np.float32)
    with threadpool_limits(limits=1):
        np.matmul(a, b, out=out)
        best = np.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(20):
                np.matmul(a, b, out=out)
            best = min(best, (time.perf_counter() - start) / 20)
    gflops = 2.0 * n_rows * n_volumes * n_columns / best / 1e9
    return 3 * 2 * n_volumes * n_columns / (gflops * 1e3), gflops


def dipy_us(gtab, data, mask, *, n_voxels, n_iter, tv_box, tv_iter):
    """DIPY's voxel-wise (subset) and global TV (a box of the head) fits, us/voxel-iteration."""
    from dipy.core.gradients import gradient_table
    from dipy.core.sphere import Sphere
    from dipy.reconst.rumba import RumbaSDModel as DipyRumba

    from rumba_bids.core.sphere import get_sphere

    sphere = Sphere(xyz=get_sphere("repulsion724").vertices)
    dgtab = gradient_table(np.array(gtab.bvals), bvecs=np.array(gtab.bvecs))
    voxels = data[mask][:: max(int(mask.sum()) // n_voxels, 1)][:n_voxels].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DipyRumba(dgtab, sphere=sphere, n_iter=n_iter)
        start = time.perf_counter()
        model.fit(voxels)
        voxelwise = (time.perf_counter() - start) / (len(voxels) * n_iter) * 1e6
        centre = [s // 2 for s in mask.shape]
        box = tuple(slice(c - tv_box // 2, c + tv_box - tv_box // 2) for c in centre)
        block = data[box].astype(np.float64)
        model = DipyRumba(dgtab, sphere=sphere, n_iter=tv_iter, voxelwise=False, use_tv=True)
        start = time.perf_counter()
        model.fit(block, mask=np.ones(block.shape[:3], bool))
        tv = (time.perf_counter() - start) / (block[..., 0].size * tv_iter) * 1e6
    return {"voxelwise": voxelwise, "tv": tv}


def other_stages(gtab, data, mask):
    """Seconds of the tensor fit, SH projection and peak extraction of the whole head."""
    from rumba_bids.core import extract_peaks, fit_tensor, get_sphere, sf_to_sh

    sphere = get_sphere("repulsion724")
    voxels = data[mask].astype(np.float64)
    times = {}
    start = time.perf_counter()
    fit_tensor(gtab, voxels)
    times["tensor"] = time.perf_counter() - start
    rng = np.random.default_rng(0)
    odf = rng.random((int(mask.sum()), len(sphere)), dtype=np.float32) ** 8
    start = time.perf_counter()
    sf_to_sh(odf, sphere, sh_order=8)
    times["sf_to_sh"] = time.perf_counter() - start
    start = time.perf_counter()
    extract_peaks(odf, sphere, npeaks=5)
    times["peaks"] = time.perf_counter() - start
    return times


def spread(values) -> str:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "n/a"
    return f"{np.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 60))
    parser.add_argument(
        "--iterations", type=int, nargs="+", default=[600], help="one count, or two (a slope)"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["voxelwise", "tv"])
    parser.add_argument("--no-dipy", action="store_true")
    parser.add_argument(
        "--dataset",
        help="folder to keep the series in (reused when present; default: a temporary folder "
        "removed at exit); each fit's outputs are removed once it has reported",
    )
    parser.add_argument("--json", help="also write every measurement to this file")
    args = parser.parse_args(argv)
    root = Path(args.dataset or tempfile.mkdtemp(prefix="rumba-head-"))
    root.mkdir(parents=True, exist_ok=True)
    if not args.dataset:  # a series of our own: gone with the process
        atexit.register(shutil.rmtree, root, True)
    start = time.perf_counter()
    if (root / "mask.nii.gz").exists():
        gtab, data, mask = load_dataset(root)
    else:
        gtab, data, mask = make_dataset(root, tuple(args.shape))
    n_vox = int(mask.sum())
    print(
        f"head {tuple(args.shape)}, {len(gtab)} volumes, {n_vox} voxels in the mask "
        f"(made in {time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    n_dwi = int((~gtab.b0s_mask).sum()) + 1
    floor, gflops = gemm_floor_us(1024, n_dwi, 726)
    print(f"float32 GEMM, one thread: {gflops:.0f} GFLOP/s -> floor {floor:.2f} us/voxel-it")
    counts = sorted(args.iterations)
    # one iteration of each mode first: numba compiles and caches its kernels, and the
    # series is in the page cache, so that neither lands in the first measured fit
    for mode in args.modes:
        run_fit(root, mode, 1, 1)
    rows = []
    for repeat in range(args.repeats):
        # the two modes of one thread count back to back (the ratio is taken between them),
        # the first of them alternating from one repeat to the next
        order = args.modes if repeat % 2 == 0 else args.modes[::-1]
        for threads in (1, 2):
            for mode in order:
                runs = {n: run_fit(root, mode, threads, n) for n in counts}
                last = runs[counts[-1]]
                if len(counts) > 1:
                    a, b = counts[0], counts[-1]
                    # the slope of the iterations' own time (reading and writing, whose
                    # time varies with the page cache, are left out of it)
                    per_it = (runs[b]["iter_wall"] - runs[a]["iter_wall"]) / (b - a)
                    cpu_it = (runs[b]["iter_cpu"] - runs[a]["iter_cpu"]) / (b - a)
                    fixed = runs[a]["wall"] - a * per_it
                    cpu_fixed = runs[a]["cpu"] - a * cpu_it
                    wall600, cpu600 = fixed + 600 * per_it, cpu_fixed + 600 * cpu_it
                else:
                    n = counts[0]
                    per_it, cpu_it = last["wall"] / n, last["cpu"] / n
                    wall600 = last["wall"] * 600 / n
                    cpu600 = last["cpu"] * 600 / n
                row = dict(
                    repeat=repeat,
                    mode=mode,
                    threads=threads,
                    us=per_it / n_vox * 1e6,
                    cpu_us=cpu_it / n_vox * 1e6,
                    wall600=wall600,
                    cpu600=cpu600,
                    rss_gb=last["rss"] / 1e9,
                    estimate_gb=last["estimate"] / 1e9,
                    runs=runs,
                )
                rows.append(row)
                print(
                    f"  [{repeat}] {mode:9s} {threads} thr: {row['us']:.2f} us/v-it wall, "
                    f"{row['cpu_us']:.2f} CPU; 600 it: {wall600:.0f} s wall, {cpu600:.0f} s "
                    f"CPU; peak RSS {row['rss_gb']:.2f} GB (estimate {row['estimate_gb']:.2f})",
                    flush=True,
                )
    dipy = None
    if not args.no_dipy:
        dipy = dipy_us(gtab, data, mask, n_voxels=100, n_iter=30, tv_box=20, tv_iter=5)
        print(f"DIPY: voxel-wise {dipy['voxelwise']:.1f} us/v-it, TV {dipy['tv']:.1f} us/v-it")
    stages = other_stages(gtab, data, mask)
    print(
        "other stages (one thread each, whole head):", {k: round(v, 2) for k, v in stages.items()}
    )
    star = "*" if len(counts) > 1 or counts[0] != 600 else ""
    print(f"\nsummary over {args.repeats} repeat(s): median (min-max)")
    by = {(r["repeat"], r["mode"], r["threads"]): r for r in rows}
    for mode in args.modes:
        one = [by[(k, mode, 1)] for k in range(args.repeats)]
        two = [by[(k, mode, 2)] for k in range(args.repeats)]
        print(
            f"  {mode}: 1 thread {spread([r['us'] for r in one])} us/v-it "
            f"({spread([r['wall600'] for r in one])} s{star}), 2 threads "
            f"{spread([r['us'] for r in two])} us/v-it ({spread([r['wall600'] for r in two])} s"
            f"{star}); speed-up 1->2 {spread([a['us'] / b['us'] for a, b in zip(one, two)])}; "
            f"CPU 2/1 {spread([b['cpu600'] / a['cpu600'] for a, b in zip(one, two)])}; "
            f"CPU us/v-it at 1 thread / floor {spread([a['cpu_us'] / floor for a in one])}; "
            f"peak RSS {spread([r['rss_gb'] for r in one + two])} GB "
            f"(estimate {one[0]['estimate_gb']:.2f})"
        )
        if dipy is not None:
            print(f"    DIPY / ours (1 thread): {spread([dipy[mode] / r['us'] for r in one])}x")
    if "tv" in args.modes and "voxelwise" in args.modes:
        for threads in (1, 2):
            ratios = [
                by[(k, "tv", threads)]["us"] / by[(k, "voxelwise", threads)]["us"]
                for k in range(args.repeats)
            ]
            cpu = [
                by[(k, "tv", threads)]["cpu_us"] / by[(k, "voxelwise", threads)]["cpu_us"]
                for k in range(args.repeats)
            ]
            print(
                f"  TV / voxel-wise iteration, {threads} thread(s): wall {spread(ratios)}, "
                f"CPU {spread(cpu)}"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "dipy": dipy, "stages": stages, "floor_us": floor}, indent=1)
        )


if __name__ == "__main__":
    main()
