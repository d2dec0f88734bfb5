"""File-level helpers shared by the interfaces: checked loading and saving.

Loading functions raise :class:`~rumba_bids.interfaces.errors.RumbaInputError`
subclasses that name the file and the problem; saving functions keep the
reference image's header and affine and write float32 (or uint8 masks).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.utils.filemanip import fname_presuffix

from .errors import InputDataError, InputMissingError

logger = logging.getLogger("nipype.interface")

#: Largest difference (mm) between two affines that still counts as the same grid.
AFFINE_TOLERANCE = 1e-3


def require_file(path, what: str) -> Path:
    """Return ``path`` as a Path, or raise :class:`InputMissingError` naming it."""
    if path is None or not os.path.isfile(path):
        raise InputMissingError(path, f"{what} not found (no such file)")
    return Path(path)


def load_image(path, what: str):
    """Load a NIfTI image (header only; data stay on disk until asked for)."""
    require_file(path, what)
    try:
        image = nib.load(os.fspath(path))
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise InputDataError(path, f"cannot read the {what} as an image: {exc}") from exc
    if not isinstance(image, nib.Nifti1Pair):  # NIfTI-1 and NIfTI-2, single file or pair
        raise InputDataError(path, f"the {what} must be NIfTI, got {type(image).__name__}")
    return image


def load_dwi(path):
    """Load a 4D diffusion series (header only); 3D or 5D images are refused."""
    image = load_image(path, "DWI image")
    if len(image.shape) != 4:
        raise InputDataError(
            path,
            f"the DWI image is {len(image.shape)}D with shape {image.shape}; "
            "a 4D series (x, y, z, volumes) is needed",
        )
    return image


def image_data(image, path, *, dtype=np.float32) -> np.ndarray:
    """The image's (scaled) data as ``dtype``; NaN/inf are reported by the callers."""
    try:
        return np.asarray(image.get_fdata(dtype=dtype))
    except Exception as exc:  # truncated files fail only when the data are read
        raise InputDataError(path, f"cannot read the image data: {exc}") from exc


def same_grid(image_a, image_b) -> bool:
    """True when both images have the same 3D shape and (within 1e-3 mm) affine."""
    return image_a.shape[:3] == image_b.shape[:3] and np.allclose(
        image_a.affine, image_b.affine, rtol=0, atol=AFFINE_TOLERANCE
    )


def load_mask(path, reference, reference_path) -> np.ndarray:
    """Boolean mask (X, Y, Z) checked against the grid of ``reference``.

    Parameters
    ----------
    path : str
        Mask image; non-zero voxels are inside.
    reference : nibabel image
        The DWI series the mask must match (shape and affine).
    reference_path : str
        Named in the error message.
    """
    mask_image = load_image(path, "mask")
    shape = mask_image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or not same_grid(mask_image, reference):
        raise InputDataError(
            path,
            f"the mask grid (shape {mask_image.shape}, affine "
            f"{np.round(mask_image.affine, 3).tolist()}) does not match {reference_path} "
            f"(shape {reference.shape[:3]}, affine {np.round(reference.affine, 3).tolist()}); "
            "resample the mask onto the DWI grid",
        )
    data = image_data(mask_image, path).reshape(shape)
    mask = np.isfinite(data) & (data != 0)
    if not mask.any():
        raise InputDataError(path, "the mask is empty (no non-zero voxel)")
    return mask


def output_path(source, suffix: str, cwd, *, ext: str = ".nii.gz") -> str:
    """``<cwd>/<source stem><suffix><ext>``, the stem without any extension."""
    stem = fname_presuffix(os.fspath(source), suffix="", newpath=os.fspath(cwd), use_ext=False)
    return f"{stem}{suffix}{ext}"


def save_like(data, reference, path, *, dtype=np.float32) -> str:
    """Write ``data`` with the header and affine of ``reference``; return the path.

    The data type is ``dtype`` (float32 by default, uint8 for masks); scaling
    is reset, the 3D/4D shape comes from ``data``.
    """
    header = reference.header.copy()
    header.set_data_dtype(dtype)
    header.set_slope_inter(1.0, 0.0)
    image = type(reference)(np.asarray(data, dtype=dtype), reference.affine, header)
    image.to_filename(os.fspath(path))
    return os.fspath(path)


@contextmanager
def limit_threads(n_threads: int | None):
    """Limit BLAS/OpenMP threads of this process to ``n_threads`` (None: no limit).

    Uses :mod:`threadpoolctl` when installed; without it, the limit cannot be
    changed after numpy has loaded its BLAS, so it is only logged (set
    ``OMP_NUM_THREADS`` before starting Python, or give the node ``n_procs``).
    """
    if n_threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        logger.debug("threadpoolctl is not installed: BLAS threads are not limited")
        yield
        return
    with threadpool_limits(limits=int(n_threads)):
        yield
