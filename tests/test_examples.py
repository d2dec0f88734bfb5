import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: The figures of DIPY's RUMBA-SD tutorial, which examples/rumba_tutorial.py writes too.
TUTORIAL_FIGURES = (
    "default_response.png",
    "estimated_response.png",
    "recursive_response.png",
    "wm_iso_partition.png",
    "rumba_odfs.png",
    "rumba_peaks.png",
    "rumba_global_odfs.png",
    "rumba_global_peaks.png",
)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _n_peaks(values):
    return (np.asarray(values) > 0).sum(-1)


def test_rumba_tutorial_runs_every_step_and_recovers_the_slab(capsys, tmp_path):
    result = _load("rumba_tutorial").main(["--n-iter", "100", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    for step in ("wm_response:", "FA-ROI response", "recursive response", "global TV fit"):
        assert step in out
    for name in TUTORIAL_FIGURES:
        header = (tmp_path / name).read_bytes()[:8]
        assert header == b"\x89PNG\r\n\x1a\n", name
    fa, recursive = result["responses"]
    # both estimated responses are the slab's fibre: (1.7, 0.2, 0.2) e-3 with 10 % CSF
    assert fa.n_voxels > 100 and 1.5e-3 < fa.evals[0] < 1.9e-3 and fa.ratio < 0.2
    assert recursive.n_voxels > 100 and 1.5e-3 < recursive.evals[0] < 1.9e-3
    # brain part 18 x 18: CSF in x 0-2 and 15-17; crossings y 0-5, fibres along x
    # in y 6-11, along y in y 12-17
    fit = result["fit"]
    ends, middle = np.r_[0:3, 15:18], slice(3, 15)
    assert fit.f_iso[ends].mean() > 0.7 and fit.f_wm[middle].mean() > 0.8
    n_model = _n_peaks(result["peaks"].values)[middle, :, 0]
    n_tv = _n_peaks(result["tv_peaks"][1])[middle, :, 0]
    for n_peaks in (n_model, n_tv):
        assert np.mean(n_peaks[:, 6:] == 1) > 0.95
        assert np.mean(n_peaks[:, :6] == 2) > 0.9
    x_band = result["peaks"].directions[middle, 6:12, 0, 0]
    assert np.mean(np.abs(x_band[..., 0]) > 0.95) > 0.95


def test_dipy_tutorial_dropin_runs_with_our_model_and_matches_dipy(capsys):
    pytest.importorskip("dipy", reason="the drop-in example runs DIPY's tutorial calls")
    result = _load("dipy_tutorial_dropin").main(["--n-iter", "10", "--size", "6"])
    out = capsys.readouterr().out
    assert "speed-up" in out and "peaks_from_model" in out
    ours, theirs = result["results"]["ours"], result["results"]["dipy"]
    np.testing.assert_allclose(ours["voxel-wise fit"][0], theirs["voxel-wise fit"][0], atol=1e-6)
    np.testing.assert_allclose(ours["global TV fit"][0], theirs["global TV fit"][0], atol=5e-3)
    np.testing.assert_array_equal(
        _n_peaks(ours["peaks_from_model"].peak_values),
        _n_peaks(theirs["peaks_from_model"].peak_values),
    )
    assert set(result["speedups"]) == {
        "voxel-wise fit",
        "peaks_from_model",
        "global TV fit",
        "global-fit peaks",
    }
