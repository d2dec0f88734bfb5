"""RUMBA-SD fit speed and memory: rumba-bids vs DIPY, side by side in one run.

Usage::

    python benchmarks/rumba_fit.py            # full run (about 10 minutes on 2 cores)
    python benchmarks/rumba_fit.py --quick    # fewer iterations / voxels (about 2 minutes)

Workloads
---------
* tutorial: 30x30x1 voxels, 160 volumes (10 b0 + 150 at b=2000), symmetric362,
  600 iterations (DIPY's RUMBA-SD tutorial);
* slab: 20,000 voxels (50x50x8), same acquisition, repulsion724;
* brain: 100,000 masked voxels x 160 volumes x 724 directions, peak RSS of the
  whole process with and without TV (memory does not depend on n_iter, so a
  few iterations are run).

DIPY's voxel-wise fit is timed on a subset of voxels and its global fits with
fewer iterations; every DIPY figure is converted to microseconds per
voxel-iteration, and totals are extrapolated from that (marked ``*``).  The
"GEMM floor" is three (n_volumes x n_sphere+2) products per voxel-iteration at
the float32 matrix-multiply throughput measured at the start of the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np

from rumba_bids.core import RumbaSDModel, get_sphere
from rumba_bids.core.phantoms import (
    add_rician_noise,
    make_acquisition,
    multi_tensor_signal,
    random_directions,
)


def phantom(shape, gtab, *, seed=0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    dirs = np.stack([random_directions(2, rng=rng) for _ in range(n)])
    frac = rng.dirichlet([2, 2], size=n) * 0.8
    sig = multi_tensor_signal(
        gtab, dirs, frac, iso_fractions=np.full((n, 1), 0.2), iso_diffusivities=[3e-3], S0=100
    )
    return add_rician_noise(sig, snr=20, rng=rng, S0=100).reshape(*shape, -1).astype(np.float32)


def gemm_gflops(n_rows, n_volumes, n_columns, *, repeats=30):
    rng = np.random.default_rng(0)
    a = rng.random((n_rows, n_volumes), dtype=np.float32)
    b = rng.random((n_volumes, n_columns), dtype=np.float32)
    out = np.empty((n_rows, n_columns), np.float32)
    np.matmul(a, b, out=out)
    start = time.perf_counter()
    for _ in range(repeats):
        np.matmul(a, b, out=out)
    elapsed = time.perf_counter() - start
    return 2.0 * n_rows * n_volumes * n_columns * repeats / elapsed / 1e9


def timed(fn):
    """Seconds of one call (no tracing active) and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def traced_peak(fn):
    """Peak bytes allocated during a call (numpy reports to tracemalloc)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def dipy_model(gtab, sphere, **kwargs):
    from dipy.core.gradients import gradient_table
    from dipy.core.sphere import Sphere
    from dipy.reconst.rumba import RumbaSDModel as DipyRumba

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DipyRumba(
            gradient_table(np.array(gtab.bvals), bvecs=np.array(gtab.bvecs)),
            sphere=Sphere(xyz=sphere.vertices),
            **kwargs,
        )


def run_workload(name, shape, sphere_name, gtab, *, n_iter, dipy_iter, dipy_voxels, rows):
    sphere = get_sphere(sphere_name)
    data = phantom(shape, gtab)
    n_vox = int(np.prod(shape))
    flops = 3 * 2 * len(gtab.bvals[~gtab.b0s_mask]) * (len(sphere) + 2)
    gflops = gemm_gflops(1024, len(gtab) - int(gtab.b0s_mask.sum()) + 1, len(sphere) + 2)
    floor_us = flops / (gflops * 1e3)
    print(
        f"\n== {name}: {shape} = {n_vox} voxels, {len(gtab)} volumes, {sphere_name}, "
        f"{n_iter} iterations"
    )
    print(f"   float32 GEMM {gflops:.0f} GFLOP/s -> floor {floor_us:.2f} us per voxel-iteration")
    results = {}
    modes = {
        "voxelwise": dict(voxelwise=True),
        "global": dict(voxelwise=False),
        "global+TV": dict(voxelwise=False, use_tv=True),
    }
    for mode, kwargs in modes.items():
        model = RumbaSDModel(gtab, sphere=sphere, n_iter=n_iter, **kwargs)
        seconds, fit = timed(lambda model=model: model.fit(data))
        short = RumbaSDModel(gtab, sphere=sphere, n_iter=2, **kwargs)
        peak = traced_peak(lambda short=short: short.fit(data))
        us = seconds / (n_vox * n_iter) * 1e6
        results[mode] = (seconds, us, peak, fit)
    # DIPY
    flat = data.reshape(-1, data.shape[-1])
    dipy = {}
    subset = flat[:dipy_voxels]
    model = dipy_model(gtab, sphere, n_iter=n_iter)
    seconds, dfit = timed(lambda: model.fit(subset))
    peak = traced_peak(lambda: dipy_model(gtab, sphere, n_iter=2).fit(subset))
    dipy["voxelwise"] = (seconds / (len(subset) * n_iter) * 1e6, peak, len(subset), n_iter)
    ours = results["voxelwise"][3].model_params.reshape(n_vox, -1)[:dipy_voxels]
    theirs = np.concatenate([dfit.odf(), dfit.f_gm[:, None], dfit.f_csf[:, None]], axis=1)
    max_diff = float(np.abs(ours - theirs).max())
    for mode, use_tv in (("global", False), ("global+TV", True)):
        if use_tv and min(shape) == 1:
            dipy[mode] = None  # DIPY refuses TV on volumes with a singleton axis
            continue
        model = dipy_model(gtab, sphere, n_iter=dipy_iter, voxelwise=False, use_tv=use_tv)
        seconds, _ = timed(lambda model=model: model.fit(data))
        short = dipy_model(gtab, sphere, n_iter=2, voxelwise=False, use_tv=use_tv)
        peak = traced_peak(lambda short=short: short.fit(data))
        dipy[mode] = (seconds / (n_vox * dipy_iter) * 1e6, peak, n_vox, dipy_iter)
    header = (
        f"   {'mode':10s} {'ours s':>8s} {'us/v-it':>8s} {'vs floor':>8s} {'ours MB':>8s} "
        f"{'DIPY s':>9s} {'us/v-it':>8s} {'DIPY MB':>8s} {'speed-up':>8s}"
    )
    print(header)
    for mode, (seconds, us, peak, _) in results.items():
        line = f"   {mode:10s} {seconds:8.2f} {us:8.2f} {us / floor_us:8.2f} {peak / 2**20:8.0f}"
        if dipy.get(mode) is None:
            line += f" {'n/a':>9s} {'':>8s} {'':>8s} {'':>8s}"
            ratio = None
        else:
            dus, dpeak, dvox, dits = dipy[mode]
            extrapolated = dus * n_vox * n_iter / 1e6
            star = "*" if (dvox != n_vox or dits != n_iter) else " "
            ratio = dus / us
            line += f" {extrapolated:8.1f}{star} {dus:8.2f} {dpeak / 2**20:8.0f} {ratio:7.1f}x"
        print(line)
        rows.append(
            dict(
                workload=name,
                mode=mode,
                seconds=seconds,
                us_per_voxel_iteration=us,
                floor_ratio=us / floor_us,
                speedup_vs_dipy=ratio,
            )
        )
    print(f"   voxel-wise fODF max |ours - DIPY| on {len(subset)} voxels: {max_diff:.2e}")
    print(
        "   (* DIPY total extrapolated from its per voxel-iteration time on "
        f"{dipy_voxels} voxels (voxel-wise) / {dipy_iter} iterations (global))"
    )


_BRAIN_CHILD = """
import sys, numpy as np
from rumba_bids.core import RumbaSDModel, get_sphere
from rumba_bids.core.phantoms import make_acquisition
use_tv = sys.argv[1] == "tv"
gtab = make_acquisition(n_b0=10, n_dirs=150, bvals=(2000.0,))
shape = (80, 80, 50)
zz, yy, xx = np.mgrid[:shape[0], :shape[1], :shape[2]]
c = (np.array(shape) - 1) / 2
ell = ((zz - c[0]) / 39) ** 2 + ((yy - c[1]) / 39) ** 2 + ((xx - c[2]) / 24.5) ** 2
mask = ell <= 1
mask &= np.cumsum(mask.ravel()).reshape(shape) <= 100_000
rng = np.random.default_rng(0)
data = (rng.random((*shape, len(gtab))) * 50 + 50).astype(np.float32)
def hwm():  # peak RSS of this process in bytes (per address space, reset at exec)
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmHWM"))
    return int(line.split()[1]) * 1024
base = hwm()
fit = RumbaSDModel(gtab, n_iter=2, voxelwise=not use_tv, use_tv=use_tv).fit(data, mask=mask)
print(int(mask.sum()), base, hwm())
"""


def brain_memory(rows):
    print("\n== brain: 100,000 masked voxels, 160 volumes, repulsion724 (peak RSS of the process)")
    for label in ("voxelwise", "tv"):
        out = subprocess.run(
            [sys.executable, "-c", _BRAIN_CHILD, label], capture_output=True, text=True, check=True
        )
        n_mask, base, peak = (int(v) for v in out.stdout.split())
        print(
            f"   {label:10s} {n_mask} voxels: peak RSS {peak / 2**30:.2f} GB "
            f"(data alone {base / 2**30:.2f} GB)"
        )
        rows.append(dict(workload="brain", mode=label, peak_rss_gb=peak / 2**30))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and voxels")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:  # report the BLAS in use when threadpoolctl is around
        import threadpoolctl

        info = threadpoolctl.threadpool_info()
        print(
            "BLAS:",
            ", ".join(
                f"{i['internal_api']} {i.get('version')} ({i['num_threads']} "
                f"threads, {i.get('architecture')})"
                for i in info
            ),
        )
    except ImportError:
        pass
    gtab = make_acquisition(n_b0=10, n_dirs=150, bvals=(2000.0,))
    rows = []
    n_iter = 100 if args.quick else 600
    run_workload(
        "tutorial",
        (30, 30, 1),
        "symmetric362",
        gtab,
        n_iter=n_iter,
        dipy_iter=n_iter,
        dipy_voxels=30 if args.quick else 100,
        rows=rows,
    )
    run_workload(
        "slab",
        (50, 50, 8),
        "repulsion724",
        gtab,
        n_iter=50 if args.quick else n_iter,
        dipy_iter=10 if args.quick else 30,
        dipy_voxels=20 if args.quick else 50,
        rows=rows,
    )
    brain_memory(rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
