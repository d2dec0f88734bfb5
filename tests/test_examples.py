import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rumba_tutorial_example_runs_and_recovers_the_slab(capsys):
    fit, tv_fit = _load("rumba_tutorial").main(["--n-iter", "200"])
    out = capsys.readouterr().out
    assert "voxel-wise fit" in out and "global TV fit" in out
    assert fit.f_iso[8:].mean() > 0.7  # CSF third
    assert fit.f_wm[:8].mean() > 0.8
    from rumba_bids.core.peaks import extract_peaks

    for result in (fit, tv_fit):
        peaks = extract_peaks(result.odf(), result.model.sphere)
        n_peaks = (peaks.indices >= 0).sum(-1)
        assert np.mean(n_peaks[:4] == 1) > 0.95
        assert np.mean(n_peaks[4:8] == 2) > 0.95
