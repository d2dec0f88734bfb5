"""Benchmark: batched peak extraction and SH fitting against DIPY.

Run with ``python benchmarks/peaks.py [--n-voxels 100000] [--n-dipy 5000]``.

Synthetic fODFs on ``repulsion724`` (our sphere; DIPY gets the same vertices
as a ``dipy.core.sphere.Sphere``): 1 to 3 Watson-like lobes with random
directions and weights, a small isotropic floor and positive noise, seeded.
``extract_peaks`` runs on all voxels; DIPY's ``peak_directions`` runs in a
Python loop on a subset and its time is extrapolated per voxel.  The peaks of
the subset are compared too (vertex peaks, ``refine=False``: DIPY's).  Then
the sub-vertex refinement: its cost inside ``extract_peaks`` (refine=True minus
refine=False), and on its own for 5 peaks in each of the voxels (every local
maximum kept: threshold 0, separation 0), wall-clock and CPU time
(``time.process_time``, less sensitive to other load), min / median / max of
the repeats, on one thread.  Then ``sf_to_sh`` (order 8, mrtrix3 basis) is
timed against DIPY's ``sf_to_sh`` (tournier07, legacy=False).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from dipy.core.sphere import Sphere as DipySphere
from dipy.direction.peaks import peak_directions as dipy_peak_directions
from dipy.reconst.shm import sf_to_sh as dipy_sf_to_sh
from threadpoolctl import threadpool_limits

from rumba_bids.core.peaks import _prepare, _refine_block, _refinement, extract_peaks
from rumba_bids.core.shm import sf_to_sh
from rumba_bids.core.sphere import get_sphere


def synthetic_fodfs(n_voxels, vertices, *, seed=0, concentration=30.0, noise=0.02):
    """Random non-negative fODFs (n_voxels, N) made of 1 to 3 sharp lobes."""
    rng = np.random.default_rng(seed)
    n_lobes = rng.integers(1, 4, n_voxels)
    axes = rng.normal(size=(n_voxels, 3, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    weights = rng.uniform(0.3, 1.0, (n_voxels, 3))
    weights[np.arange(3)[None, :] >= n_lobes[:, None]] = 0.0
    odfs = np.full((n_voxels, len(vertices)), 0.01)
    for lobe in range(3):
        cosines = axes[:, lobe] @ vertices.T
        odfs += weights[:, lobe, None] * np.exp(concentration * (cosines**2 - 1.0))
    odfs += np.abs(rng.normal(scale=noise, size=odfs.shape))
    return odfs


def best_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def spread(function, repeats):
    """(wall, cpu) lists of seconds over the repeats, and the last result."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def _summary(seconds):
    return f"min {min(seconds):.3f} / median {np.median(seconds):.3f} / max {max(seconds):.3f} s"


def refinement_timings(odfs, sphere, repeats):
    """Print the cost of the refinement, in extract_peaks and for 5 peaks per voxel."""
    vertex_walls, vertex_cpus, _ = spread(
        lambda: extract_peaks(odfs, sphere, refine=False), repeats
    )
    refined_walls, refined_cpus, _ = spread(lambda: extract_peaks(odfs, sphere), repeats)
    print(
        f"extract_peaks refine=False: wall {_summary(vertex_walls)}; cpu {_summary(vertex_cpus)}"
    )
    print(
        f"extract_peaks refine=True:  wall {_summary(refined_walls)}; cpu {_summary(refined_cpus)}"
    )
    print(
        f"refinement inside extract_peaks (median difference): wall "
        f"{np.median(refined_walls) - np.median(vertex_walls):.3f} s, cpu "
        f"{np.median(refined_cpus) - np.median(vertex_cpus):.3f} s"
    )
    every = extract_peaks(
        odfs, sphere, relative_peak_threshold=0.0, min_separation_angle=0, npeaks=5, refine=False
    )
    _, geometry = _prepare(sphere, 0.0, 0, 5)
    refinement = _refinement(sphere, geometry)
    rows = np.arange(len(odfs))
    indices = every.indices.astype(np.intp)
    n_peaks = int((indices >= 0).sum())
    walls, cpus, _ = spread(
        lambda: _refine_block(odfs, rows, indices, every.values, geometry, refinement), repeats
    )
    print(
        f"refinement of {len(odfs)} voxels x 5 peaks ({n_peaks} peaks): wall {_summary(walls)}; "
        f"cpu {_summary(cpus)} (target: 2 s)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-voxels", type=int, default=100_000)
    parser.add_argument("--n-dipy", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--refine-repeats", type=int, default=7)
    args = parser.parse_args(argv)

    sphere = get_sphere("repulsion724")
    dipy_sphere = DipySphere(xyz=sphere.vertices)
    odfs = synthetic_fodfs(args.n_voxels, sphere.vertices)
    odfs32 = odfs.astype(np.float32)
    print(f"{args.n_voxels} voxels x {len(sphere)} directions (repulsion724)")

    extract_peaks(odfs[:100], sphere)  # build the sphere's neighbourhood once
    ours, result = best_time(lambda: extract_peaks(odfs, sphere, refine=False), args.repeats)
    ours32, _ = best_time(lambda: extract_peaks(odfs32, sphere, refine=False), args.repeats)

    subset = odfs[: args.n_dipy]

    def dipy_loop():
        return [
            dipy_peak_directions(
                odf, dipy_sphere, relative_peak_threshold=0.5, min_separation_angle=25
            )
            for odf in subset
        ]

    dipy_time, dipy_result = best_time(dipy_loop, args.repeats)
    dipy_per_voxel = dipy_time / len(subset)
    dipy_total = dipy_per_voxel * args.n_voxels
    same = 0
    for voxel, (_, _, indices) in enumerate(dipy_result):
        ours_indices = result.indices[voxel]
        same += np.array_equal(ours_indices[ours_indices >= 0], indices[:5])
    print(f"extract_peaks float64: {ours:.3f} s ({ours / args.n_voxels * 1e6:.2f} us/voxel)")
    print(f"extract_peaks float32: {ours32:.3f} s ({ours32 / args.n_voxels * 1e6:.2f} us/voxel)")
    print(
        f"DIPY peak_directions loop: {dipy_time:.3f} s for {len(subset)} voxels "
        f"({dipy_per_voxel * 1e6:.2f} us/voxel, {dipy_total:.2f} s extrapolated)"
    )
    print(
        f"speed-up vs DIPY: float64 {dipy_total / ours:.1f}x, float32 {dipy_total / ours32:.1f}x"
    )
    print(f"identical peaks in {same}/{len(subset)} voxels of the subset")
    with threadpool_limits(1):
        refinement_timings(odfs, sphere, args.refine_repeats)

    sh_order = 8
    ours_sh, coefficients = best_time(
        lambda: sf_to_sh(odfs, sphere, sh_order=sh_order, basis="mrtrix3"), args.repeats
    )
    dipy_sh, dipy_coefficients = best_time(
        lambda: dipy_sf_to_sh(
            odfs, dipy_sphere, sh_order_max=sh_order, basis_type="tournier07", legacy=False
        ),
        args.repeats,
    )
    error = np.abs(coefficients - dipy_coefficients).max() / np.abs(dipy_coefficients).max()
    print(
        f"sf_to_sh order {sh_order}: ours {ours_sh:.3f} s, DIPY {dipy_sh:.3f} s "
        f"(ratio {dipy_sh / ours_sh:.2f}x), max relative difference {error:.1e}"
    )


if __name__ == "__main__":
    main()
