"""File-level helpers shared by the interfaces: checked loading and saving.

Loading functions are those of :mod:`rumba_bids.interfaces.validation` (the
checks the pre-flight runs too); they raise
:class:`~rumba_bids.interfaces.errors.RumbaInputError` subclasses that name the
file and the problem.  Saving functions keep the reference image's header and
affine and write float32 (or uint8 masks).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import numpy as np
from nipype.utils.filemanip import fname_presuffix

from .errors import InputDataError
from .validation import (  # noqa: F401  (the file checks the interfaces share)
    AFFINE_TOLERANCE,
    check_mask,
    load_dwi,
    load_image,
    require_file,
    same_grid,
)

logger = logging.getLogger("nipype.interface")


def image_values(image, path, *, lazy=False):
    """The image's values as stored (scaled to float when the header says so).

    A memory map of the file where nibabel can give one (uncompressed,
    unscaled): nothing is read until used, and the array is in Fortran order,
    as NIfTI stores it.  With ``lazy``, a compressed file is not read here but
    returned as nibabel's array proxy, which reads the part that is sliced.
    """
    if lazy and str(path).endswith(".gz"):
        return image.dataobj
    try:
        return np.asanyarray(image.dataobj)
    except Exception as exc:  # truncated files fail only when the data are read
        raise InputDataError(path, f"cannot read the image data: {exc}") from exc


def slab_volumes(values, rows: slice, path=None) -> np.ndarray:
    """The slices ``rows`` of a 4D image as ``(M, n)``: one row per volume.

    Columns are the slab's voxels in Fortran order (x fastest).  For a
    Fortran-ordered image (a NIfTI memory map) this is a view whose rows are
    contiguous runs of the file, so a matrix product or a gather reads each
    volume sequentially, where a C-ordered ``(voxels, M)`` copy would read the
    file ``M`` values apart.  ``path`` is named if reading fails.
    """
    try:
        slab = np.asanyarray(values[:, :, rows])
    except Exception as exc:  # a compressed file read lazily fails here when truncated
        raise InputDataError(path, f"cannot read the image data: {exc}") from exc
    return slab.T.reshape(slab.shape[3], -1)


def image_data(image, path, *, dtype=np.float32) -> np.ndarray:
    """The image's (scaled) data as ``dtype``; NaN/inf are reported by the callers."""
    try:
        return np.asarray(image.get_fdata(dtype=dtype))
    except Exception as exc:  # truncated files fail only when the data are read
        raise InputDataError(path, f"cannot read the image data: {exc}") from exc


def load_mask(path, reference, reference_path=None) -> np.ndarray:
    """Boolean mask (X, Y, Z) checked against the grid of ``reference``.

    The same check as the pre-flight's (:func:`rumba_bids.interfaces.validation.check_mask`):
    same shape and affine, binary (0 and 1), not empty.
    """
    return check_mask(path, reference)


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
