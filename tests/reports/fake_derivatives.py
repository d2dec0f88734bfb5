"""A small rumba-bids derivatives folder written with nibabel (BIDS_CONVENTIONS.md names).

Used by the report tests (``fake_dataset`` fixture in ``conftest.py``) and the report
interfaces' tests.

One subject, two sessions of the synthetic head phantom (single shell): ses-1
with an RAS affine, ses-2 with an LAS affine (x flipped), each fitted with
RUMBA-SD (few iterations), its fODF stored as SH (mrtrix3 basis, voxel frame),
peaks in the MRtrix layout, fractions, SNR, mask, response, sidecars; the raw
dataset beside it; ``logs/CITATION.md``; one crash file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rumba_bids.core import RumbaSDModel, get_sphere
from rumba_bids.core.gradients import bvecs_fsl_to_voxel
from rumba_bids.core.head_phantom import demo_gradient_table, make_head_phantom
from rumba_bids.core.peaks import extract_peaks, peaks_to_mrtrix
from rumba_bids.core.response import default_response
from rumba_bids.core.shm import sf_to_sh

SHAPE = (18, 22, 16)
RUN_UUID = "20240101-000000_abcd"
CITATION = """# Methods

Fibre orientation distributions were computed with *RUMBA-SD* [@canales2015rumba]
using rumba-bids 0.1.0.

## References

1. Canales-Rodriguez EJ et al. (2015). https://doi.org/10.1371/journal.pone.0138910
"""
CRASH_TEXT = """Node: rumba_bids_0_1_0_wf.sub_01_ses_2_wf.rumba_wf.fit_rumba
Working directory: /work/x

Node inputs:

dwi_file = /data/sub-01_ses-2_dwi.nii.gz

Traceback (most recent call last):
  File "/x.py", line 1, in run
    raise ValueError("boom")
ValueError: sub-01_ses-2_dwi.nii.gz: 3 voxels contain NaN <script>
"""


@dataclass(frozen=True)
class FakeDataset:
    bids_dir: Path
    output_dir: Path
    subject: str
    labels: tuple


def _save(array, affine, path: Path, dtype=np.float32):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.asarray(array).astype(dtype), affine).to_filename(str(path))


def _json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2))


def _affine(flip_x: bool) -> np.ndarray:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    if flip_x:
        affine[0, 0] = -2.0
    return affine


def write_run(bids_dir: Path, out_dir: Path, label: str, *, session: str, flip_x: bool, seed):
    """Raw DWI + derivatives of one run."""
    gtab = demo_gradient_table(n_b0=6, n_dirs=48, bvals=(2000.0,))
    phantom = make_head_phantom(gtab, shape=SHAPE, rng=np.random.default_rng(seed), snr=30)
    affine = _affine(flip_x)
    raw = bids_dir / "sub-01" / f"ses-{session}" / "dwi"
    _save(np.round(phantom.signal), affine, raw / f"{label}_dwi.nii.gz", dtype=np.int16)
    (raw / f"{label}_dwi.bval").write_text(" ".join(f"{b:g}" for b in gtab.bvals) + "\n")
    fsl = bvecs_fsl_to_voxel(gtab.bvecs, affine)  # the flip is its own inverse
    (raw / f"{label}_dwi.bvec").write_text(
        "\n".join(" ".join(f"{v:.6f}" for v in row) for row in fsl.T) + "\n"
    )

    sphere = get_sphere("repulsion724")
    model = RumbaSDModel(gtab, n_iter=40, gm_response=None, sphere=sphere)
    fit = model.fit(phantom.signal, mask=phantom.brain_mask)
    odf = fit.odf()
    peaks = extract_peaks(odf, sphere, mask=fit.mask, npeaks=3)
    sh = sf_to_sh(odf, sphere.vertices, sh_order=8, basis="mrtrix3")

    folder = out_dir / "sub-01" / f"ses-{session}" / "dwi"
    stem = f"{label}_model-rumba_param-"
    response = default_response().to_dict()
    sources = [f"bids:raw:sub-01/ses-{session}/dwi/{label}_dwi{ext}" for ext in (".nii.gz",
               ".bval", ".bvec")]  # fmt: skip
    parameters = {
        "Iterations": 40,
        "NoiseModel": "Rician",
        "Fit": "voxelwise",
        "TotalVariation": False,
        "Sphere": "repulsion724",
        "SphereDirections": len(sphere),
        "GMCompartment": False,
        "CSFCompartment": True,
        "B0Threshold": 50,
        "Shells": [2000.0],
        "FittedVoxels": int(fit.mask.sum()),
        "MedianSNR": float(np.median(fit.snr[fit.mask])),
    }
    base = {
        "Model": {"Description": "RUMBA-SD", "Parameters": parameters},
        "ResponseFunction": {"Type": "eigen", "Values": [1.7e-3, 0.2e-3, 0.2e-3, 1.0]},
        "SkullStripped": True,
        "Sources": sources,
    }
    maps = {
        "fod": (sh, {"OrientationEncoding": {"Type": "sh", "SphericalHarmonicBasis": "mrtrix3",
                                             "SphericalHarmonicDegree": 8, "EncodingAxis": 3,
                                             "Reference": "ijk"}}),
        "peaks": (peaks_to_mrtrix(peaks.directions, peaks.values),
                  {"OrientationEncoding": {"Type": "3vector", "Reference": "ijk"}}),
        "peakvals": (peaks.values, {}),
        "gfa": (peaks.gfa, {}),
        "fwm": (fit.f_wm, {}),
        "fcsf": (fit.f_csf, {}),
        "fiso": (fit.f_iso, {}),
        "snr": (fit.snr, {}),
    }  # fmt: skip
    for param, (array, extra) in maps.items():
        _save(array, affine, folder / f"{stem}{param}_dwimap.nii.gz")
        _json(folder / f"{stem}{param}_dwimap.json", {**base, **extra})
    _save(fit.mask, affine, folder / f"{label}_desc-brain_mask.nii.gz", dtype=np.uint8)
    _json(folder / f"{label}_desc-brain_mask.json", {"Description": "median Otsu",
                                                      "Sources": sources})  # fmt: skip
    _json(folder / f"{label}_model-rumba_response.json", response)
    return fit, phantom


def write_fake_dataset(root: Path) -> FakeDataset:
    bids_dir, out_dir = root / "bids", root / "out"
    labels = []
    for session, flip_x in (("1", False), ("2", True)):
        label = f"sub-01_ses-{session}"
        write_run(bids_dir, out_dir, label, session=session, flip_x=flip_x, seed=int(session))
        labels.append(label)
    _json(
        out_dir / "dataset_description.json",
        {
            "Name": "rumba-bids",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "rumba-bids", "Version": "0.1.0"}],
            "DatasetLinks": {"raw": bids_dir.as_uri()},
        },
    )
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    (out_dir / "logs" / "CITATION.md").write_text(CITATION)
    log = out_dir / "sub-01" / "log" / RUN_UUID
    log.mkdir(parents=True)
    (log / "crash-20240101-000001-root-fit_rumba-1234.txt").write_text(CRASH_TEXT)
    settings = log / "rumba_bids_settings.json"
    settings.write_text("{}")
    # the app writes its settings just before processing: 95 s before the last output
    last = max(p.stat().st_mtime for p in (out_dir / "sub-01").glob("ses-*/dwi/*"))
    os.utime(settings, (last - 95.0, last - 95.0))
    return FakeDataset(bids_dir, out_dir, "01", tuple(labels))
