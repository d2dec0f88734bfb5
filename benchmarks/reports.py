"""Report speed: every figure and the HTML page of the default demo subject.

Writes the default demo dataset (``rumba-bids-demo``), processes sub-01 (two
sessions, 40 x 48 x 34 voxels) with ``rumba-bids`` unless ``--outputs`` names
an existing output folder, then times :func:`generate_reports` (the issue's
target: under 20 s) and each figure alone.  It also times the glyph slice
drawn two ways from the same shaded triangles: the renderer's single
Gouraud-triangle artist and a matplotlib ``PolyCollection`` (one Path per
triangle).  DIPY has no headless renderer to compare with (its glyphs need
FURY/VTK and an OpenGL context).

    python benchmarks/reports.py [--outputs DIR] [--n-iter 100]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def make_outputs(root: Path, n_iter: int) -> Path:
    from rumba_bids.cli.demo import make_demo_dataset
    from rumba_bids.cli.run import main as rumba_bids

    bids_dir, out_dir = root / "demo", root / "out"
    make_demo_dataset(bids_dir, n_subjects=1)
    start = time.perf_counter()
    code = rumba_bids([str(bids_dir), str(out_dir), "participant", "--participant-label", "01",
                       "--skip-bids-validation", "--n-iter", str(n_iter), "-w",
                       str(root / "work"), "--nprocs", "2"])  # fmt: skip
    if code != 0:
        raise SystemExit(f"rumba-bids failed with exit code {code}")
    print(f"rumba-bids on sub-01 ({n_iter} iterations): {time.perf_counter() - start:.1f} s")
    return out_dir


def time_glyph_drawing(run) -> None:
    import numpy as np
    from matplotlib.collections import PolyCollection

    from rumba_bids.core.sphere import as_sphere
    from rumba_bids.reports.canvas import figure_bytes, new_figure
    from rumba_bids.reports.glyphs import glyph_artist, glyph_points, shade_glyphs, slice_camera
    from rumba_bids.reports.render import choose_view
    from rumba_bids.reports.selection import in_plane_axes

    view = choose_view(run)
    sphere = as_sphere(run.parameters.get("Sphere"))
    start = time.perf_counter()
    odfs = run.odf_slice(view.axis, view.index, sphere)[view.region]
    mask = np.take(run.mask(), view.index, axis=view.axis)[view.region]
    a, b = in_plane_axes(view.axis)
    grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in view.region],
                                indexing="ij"), axis=-1)[mask]  # fmt: skip
    centres = np.zeros((len(grid), 3))
    centres[:, a], centres[:, b] = grid[:, 0], grid[:, 1]
    load = time.perf_counter() - start
    start = time.perf_counter()
    shaded = shade_glyphs(glyph_points(odfs[mask], centres, sphere), sphere,
                          camera=slice_camera(view.axis))  # fmt: skip
    shade = time.perf_counter() - start
    print(f"glyph slice: {int(mask.sum())} voxels x {len(sphere)} directions, "
          f"{len(shaded.polygons)} visible triangles; SH -> ODF {load:.2f} s, "
          f"mesh + shading + depth sort {shade:.2f} s")  # fmt: skip
    timings = {}
    for name in ("gouraud artist", "PolyCollection"):
        start = time.perf_counter()
        figure = new_figure(8, 8)
        ax = figure.add_axes((0, 0, 1, 1))
        if name == "gouraud artist":
            ax.add_artist(glyph_artist(shaded.polygons, shaded.colours))
        else:
            ax.add_collection(PolyCollection(shaded.polygons, facecolors=shaded.colours.mean(1),
                                             edgecolors="none", antialiaseds=False))  # fmt: skip
        ax.set_xlim(view.region[0].start - 1, view.region[0].stop)
        ax.set_ylim(view.region[1].start - 1, view.region[1].stop)
        figure_bytes(figure)
        timings[name] = time.perf_counter() - start
        print(f"  draw + PNG with {name}: {timings[name]:.2f} s")
    ratio = timings["PolyCollection"] / timings["gouraud artist"]
    print(f"  PolyCollection / gouraud artist: {ratio:.1f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=Path, help="existing rumba-bids output folder")
    parser.add_argument("--n-iter", type=int, default=100, help="RUMBA iterations of the run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from rumba_bids.reports.html import generate_reports
    from rumba_bids.reports.outputs import find_runs
    from rumba_bids.reports.render import FIGURES, render_figures

    with tempfile.TemporaryDirectory() as scratch:
        out_dir = args.outputs or make_outputs(Path(scratch), args.n_iter)
        runs = find_runs(out_dir, "01")
        shape = "x".join(str(s) for s in runs[0].frame.shape)
        start = time.perf_counter()
        page = generate_reports(out_dir, "01")
        total = time.perf_counter() - start
        print(f"generate_reports(sub-01): {len(runs)} runs ({shape}), {len(runs) * len(FIGURES)} "
              f"figures + page ({page.stat().st_size / 1e6:.1f} MB): {total:.2f} s "
              f"(target < 20 s)")  # fmt: skip
        for name in FIGURES:
            start = time.perf_counter()
            render_figures(runs[0], Path(scratch) / "figs", figures=[name])
            print(f"  {name:10s} {time.perf_counter() - start:6.2f} s")
        time_glyph_drawing(runs[0])


if __name__ == "__main__":
    main()
