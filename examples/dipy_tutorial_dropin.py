"""rumba-bids as a drop-in for DIPY's RumbaSDModel in DIPY's own RUMBA-SD tutorial.

Makes the calls of DIPY's ``reconst_rumba.py`` tutorial with DIPY's objects
and functions (``gradient_table``, ``get_sphere``, ``auto_response_ssst``,
``median_otsu``, ``recursive_response``, ``peaks_from_model``,
``peak_directions``) and only ``RumbaSDModel`` taken from rumba-bids -- the
one line a DIPY user changes::

    from rumba_bids.core import RumbaSDModel   # was: from dipy.reconst.rumba import ...

It runs on the synthetic slab of ``examples/rumba_tutorial.py`` (the
tutorial's Stanford HARDI scan needs the internet), and times each step that
uses the model against DIPY's own ``RumbaSDModel`` in the same run, printing
the ratios (DIPY's time / ours) and how close the results are::

    python examples/dipy_tutorial_dropin.py [--n-iter 600] [--repeats 3]
"""

import argparse
import time
import warnings

import numpy as np
from dipy.core.gradients import gradient_table
from dipy.data import get_sphere
from dipy.direction import peak_directions, peaks_from_model
from dipy.reconst.csdeconv import auto_response_ssst, recursive_response
from dipy.reconst.rumba import RumbaSDModel as DipyRumbaSDModel
from dipy.segment.mask import median_otsu

from rumba_bids.core import RumbaSDModel
from rumba_bids.core.phantoms import make_acquisition, tutorial_slab


def tutorial_inputs(size=18):
    """The tutorial's gradient table, sphere, data, mask and FA-ROI response, DIPY's way."""
    ours = make_acquisition(n_b0=10, n_dirs=150, bvals=(2000.0,))
    gtab = gradient_table(np.array(ours.bvals), bvecs=np.array(ours.bvecs))
    data, brain = tutorial_slab(ours, shape=(size, size, 2))
    sphere = get_sphere(name="symmetric362")
    # the tutorial's ROI lies inside a brain; the slab has a noise background, so
    # the ROI is taken in the brain part
    response, _ = auto_response_ssst(gtab, data[brain], roi_radii=10, fa_thr=0.7)
    _, mask = median_otsu(data, median_radius=2, numpass=1, vol_idx=np.arange(10))
    tutorial = dict(mask=mask, sh_order_max=8, init_fa=0.08, init_trace=0.0021, iter=4,
                    convergence=0.001, parallel=False)  # fmt: skip
    rec_response = recursive_response(gtab, data, peak_thr=0.01, **tutorial)
    if not np.all(np.isfinite(rec_response.dwi_response)):
        # on this slab no voxel passes peak_thr=0.01 and DIPY returns NaN
        # coefficients (rumba-bids' recursive_response refuses to return those)
        print("DIPY's recursive response with peak_thr=0.01 is NaN here: again with 0.05")
        rec_response = recursive_response(gtab, data, peak_thr=0.05, **tutorial)
    return gtab, sphere, data, brain, response, rec_response


def global_peaks(odf, sphere, npeaks=5):
    """The tutorial's loop of peak_directions over the voxels of the global fit."""
    shape = odf.shape[:3]
    peak_dirs = np.zeros(shape + (npeaks, 3))
    peak_values = np.zeros(shape + (npeaks,))
    for idx in np.ndindex(shape):
        direction, pk, _ = peak_directions(
            odf[idx], sphere, relative_peak_threshold=0.5, min_separation_angle=25
        )
        n = min(npeaks, pk.shape[0])
        peak_dirs[idx][:n] = direction[:n]
        peak_values[idx][:n] = pk[:n]
    return peak_dirs, peak_values


def tutorial_steps(model_class, gtab, sphere, data, brain, response, *, n_iter):
    """The tutorial's model steps with ``model_class``; returns {step: (seconds, result)}."""
    steps = {}
    rumba = model_class(gtab, wm_response=response[0], gm_response=None, sphere=sphere,
                        n_iter=n_iter)  # fmt: skip
    data_small = data[brain[0], brain[1], 0:1]
    start = time.perf_counter()
    fit = rumba.fit(data_small)
    odf, f_wm, f_iso, combined = fit.odf(), fit.f_wm, fit.f_iso, fit.combined_odf_iso
    steps["voxel-wise fit"] = (time.perf_counter() - start, (odf, f_wm, f_iso, combined))
    start = time.perf_counter()
    peaks = peaks_from_model(
        model=rumba,
        data=data_small,
        sphere=sphere,
        relative_peak_threshold=0.5,
        min_separation_angle=25,
        normalize_peaks=False,
        parallel=False,
    )
    steps["peaks_from_model"] = (time.perf_counter() - start, peaks)
    rumba = model_class(
        gtab,
        wm_response=response[0],
        gm_response=None,
        voxelwise=False,
        use_tv=True,
        sphere=sphere,
        n_iter=n_iter,
    )
    data_tv = data[brain[0], brain[1], 0:2]
    start = time.perf_counter()
    tv_fit = rumba.fit(data_tv)
    tv_odf = tv_fit.odf()
    steps["global TV fit"] = (time.perf_counter() - start, (tv_odf, tv_fit.combined_odf_iso))
    start = time.perf_counter()
    tv_peaks = global_peaks(tv_odf, sphere)
    steps["global-fit peaks"] = (time.perf_counter() - start, tv_peaks)
    return steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-iter", type=int, default=600, help="RUMBA-SD iterations")
    parser.add_argument("--repeats", type=int, default=1, help="timed repetitions")
    parser.add_argument(
        "--size", type=int, default=18, help="x and y voxels of the slab's brain part"
    )
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DIPY's notes on its legacy SH basis
        gtab, sphere, data, brain, response, rec_response = tutorial_inputs(args.size)
    print(f"data {data.shape}; FA-ROI response {np.round(response[0], 6).tolist()}")
    print(f"recursive response (DIPY): S0 {rec_response.S0:.1f}, {rec_response.dwi_response}")
    # DIPY's AxSymShResponse is taken as it is too
    RumbaSDModel(gtab, wm_response=rec_response, sphere=sphere)

    times = {"ours": [], "dipy": []}
    results = {}
    for _ in range(args.repeats):
        for label, model_class in (("ours", RumbaSDModel), ("dipy", DipyRumbaSDModel)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                steps = tutorial_steps(
                    model_class, gtab, sphere, data, brain, response, n_iter=args.n_iter
                )
            times[label].append({name: seconds for name, (seconds, _) in steps.items()})
            results[label] = {name: result for name, (_, result) in steps.items()}

    # median times, the ratio of each repeat, and the ratio of the best times (the
    # least disturbed by other load on the machine)
    print(f"\n{'step':18s} {'DIPY s':>8s} {'ours s':>8s}  speed-up (per repeat; of best times)")
    speedups = {}
    for name in times["ours"][0]:
        ours = np.array([t[name] for t in times["ours"]])
        theirs = np.array([t[name] for t in times["dipy"]])
        ratio = theirs / np.maximum(ours, 1e-9)
        speedups[name] = ratio
        print(
            f"{name:18s} {np.median(theirs):8.2f} {np.median(ours):8.2f}  "
            f"x{np.median(ratio):.1f} ({', '.join(f'{r:.1f}' for r in ratio)}; "
            f"x{theirs.min() / max(ours.min(), 1e-9):.1f})"
        )

    odf_ours, *_ = results["ours"]["voxel-wise fit"]
    odf_theirs, *_ = results["dipy"]["voxel-wise fit"]
    tv_ours = results["ours"]["global TV fit"][0]
    tv_theirs = results["dipy"]["global TV fit"][0]
    same_peaks = np.mean(
        (results["ours"]["peaks_from_model"].peak_indices >= 0).sum(-1)
        == (results["dipy"]["peaks_from_model"].peak_indices >= 0).sum(-1)
    )
    print(
        f"\nlargest fODF difference: voxel-wise {np.abs(odf_ours - odf_theirs).max():.1e}, "
        f"global TV {np.abs(tv_ours - tv_theirs).max():.1e}; "
        f"same number of peaks in {100 * same_peaks:.0f} % of voxels"
    )
    return {"times": times, "speedups": speedups, "results": results}


if __name__ == "__main__":
    main()
