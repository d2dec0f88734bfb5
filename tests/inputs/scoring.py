"""Score the app's peaks against the demo phantom's ground truth (single-fibre WM voxels)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from rumba_bids.core import world_to_voxel

#: A first peak within this angle (degrees) of the true fibre counts as found.
TOLERANCE_DEG = 20.0


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).get_fdata())


def first_peak_accuracy(peaks_file, gt_dir, gt_prefix) -> dict:
    """Fraction of single-fibre WM voxels whose first peak is within 20 degrees of the truth.

    Parameters
    ----------
    peaks_file : path
        ``*_model-rumba_param-peaks_dwimap.nii.gz`` (world frame, ``Reference: xyz``).
    gt_dir : path
        Ground-truth folder of the run (``derivatives/groundtruth/sub-*/[ses-*/]dwi``),
        on the same grid as the input images, directions along its voxel axes.
    gt_prefix : str
        ``sub-01[_ses-1]``.

    Scored in the voxels of the run's output brain mask (next to ``peaks_file``):
    a raw BIDS run is masked by median Otsu, a preprocessed one by its own mask.

    Returns
    -------
    dict
        ``fraction`` (voxels without a peak count as misses), ``median`` error
        (degrees, over voxels with a peak), ``voxels``.
    """
    gt_dir = Path(gt_dir)
    truth = _load(gt_dir / f"{gt_prefix}_model-groundtruth_param-peaks_dwimap.nii.gz")
    n_fibres = _load(gt_dir / f"{gt_prefix}_model-groundtruth_param-nfibers_dwimap.nii.gz")
    tissue = _load(gt_dir / f"{gt_prefix}_desc-tissue_dseg.nii.gz")
    image = nib.load(str(peaks_file))
    assert image.shape[:3] == truth.shape[:3]
    peaks = image.get_fdata().reshape(*image.shape[:3], -1, 3)[..., 0, :]
    peaks = world_to_voxel(peaks, image.affine)
    mask_file = Path(peaks_file).with_name(
        Path(peaks_file).name.replace("_model-rumba_param-peaks_dwimap", "_desc-brain_mask")
    )
    single = (n_fibres == 1) & (tissue == 1) & (_load(mask_file) > 0)
    estimated, true = peaks[single], truth[single][:, :3]
    found = np.all(np.isfinite(estimated), axis=1) & (np.linalg.norm(estimated, axis=1) > 0)
    unit = estimated[found] / np.linalg.norm(estimated[found], axis=1, keepdims=True)
    cosine = np.abs(np.sum(unit * true[found], axis=1)).clip(0, 1)
    errors = np.degrees(np.arccos(cosine))
    hits = np.zeros(len(estimated), bool)
    hits[found] = errors <= TOLERANCE_DEG
    return {
        "fraction": float(hits.mean()),
        "median": float(np.median(errors)) if errors.size else float("nan"),
        "voxels": int(single.sum()),
    }
