"""The one validation path of DWI series, gradient tables and masks.

The pre-flight check of the command line (:func:`rumba_bids.inputs.check.check_run`)
and the interfaces (:class:`~rumba_bids.interfaces.gradients.CheckGradients`,
:func:`~rumba_bids.interfaces.files.load_mask`, ...) call these same functions,
so a file accepted up front is accepted in the graph and a file refused in the
graph is refused up front, with the same message and exit code.

Every function raises :class:`~rumba_bids.interfaces.errors.InputMissingError`
(exit 66) or :class:`~rumba_bids.interfaces.errors.InputDataError` (exit 65)
naming the file and the problem.

b-vector conventions (:data:`BVEC_CONVENTIONS`):

``fsl``
    FSL / BIDS: components along the image's voxel axes, the first one negated
    when the affine has a positive determinant (raw BIDS, HCP-YA).
``ijk``
    Components along the voxel axes, never flipped ("DIPY convention"; QSIPrep's
    ``.bvec`` of its LPS+ images, see PennLINC/qsiprep#530).
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.gradients import (
    DEFAULT_B0_THRESHOLD,
    MAX_PLAUSIBLE_BVALUE,
    GradientTable,
    bvecs_fsl_to_voxel,
)
from .errors import InputDataError, InputMissingError

logger = logging.getLogger("rumba_bids.validation")

#: Conventions a ``.bvec`` file can follow (see the module docstring).
BVEC_CONVENTIONS = ("fsl", "ijk")
#: Exceptions nibabel / numpy raise on unreadable, corrupt or truncated files.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, MemoryError)
#: Negative values down to this fraction of the largest value are interpolation
#: undershoots (treated as 0 by the fit); deeper ones mean the image is not a magnitude image.
NEGATIVE_TOLERANCE = 0.5
#: Largest difference (mm) between two affines that still counts as the same grid.
AFFINE_TOLERANCE = 1e-3


def short(error: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) < 160 else text[:157] + "..."


def require_file(path, what: str) -> Path:
    """Return ``path`` as a Path, or raise :class:`InputMissingError` naming it."""
    if path is None or not os.path.isfile(path):
        raise InputMissingError(path, f"{what} does not exist")
    return Path(path)


def load_image(path, what: str):
    """Load a NIfTI image (header only; data stay on disk until asked for)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    require_file(path, what)
    try:
        image = nib.load(os.fspath(path))
    except (ImageFileError, *_READ_ERRORS) as error:
        raise InputDataError(path, f"cannot read the NIfTI header ({short(error)})") from error
    if not isinstance(image, nib.Nifti1Pair):  # NIfTI-1 and NIfTI-2, single file or pair
        raise InputDataError(path, f"the {what} must be NIfTI, got {type(image).__name__}")
    return image


def load_dwi(path):
    """Load a 4D diffusion series (header only); 3D or 5D images are refused."""
    image = load_image(path, "DWI image")
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 3 or (len(shape) == 4 and shape[3] == 1):
        raise InputDataError(
            path, f"is a 3D image of shape {shape}; a DWI run needs one volume per gradient (4D)"
        )
    if len(shape) != 4:
        raise InputDataError(path, f"has shape {shape}; expected a 4D image (x, y, z, volumes)")
    return image


def read_scaling(image) -> tuple[float, float]:
    """(slope, intercept) nibabel applies when reading ``image`` (1, 0: none).

    A loaded image keeps them in its data proxy, its header's ``scl_*`` fields
    being reset.
    """
    proxy = image.dataobj
    slope = getattr(proxy, "slope", None)
    inter = getattr(proxy, "inter", None)
    if slope is None:
        slope, inter = image.header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


def stored_data(image, path) -> np.ndarray:
    """The image's (scaled) values in their own type; errors name a truncated file."""
    try:
        return np.asanyarray(image.dataobj)
    except _READ_ERRORS as error:
        raise InputDataError(
            path,
            f"cannot read the image data; the file looks truncated or corrupt ({short(error)})",
        ) from error


def _read_table(path, what: str) -> np.ndarray:
    require_file(path, f"{what} file")
    try:
        values = np.loadtxt(os.fspath(path), dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as error:
        raise InputDataError(path, f"cannot parse the {what} file ({short(error)})") from error
    if values.size == 0:
        raise InputDataError(path, f"the {what} file is empty")
    return values


def read_bvals(path) -> np.ndarray:
    """b-values (N,) in s/mm^2 from one row, or one value per line (QSIPrep)."""
    bvals = _read_table(path, "b-value")
    if bvals.shape[0] != 1 and bvals.shape[1] == 1:
        bvals = bvals.T
    if bvals.shape[0] != 1:
        raise InputDataError(
            path,
            f"expected one row (or one column) of b-values, found {bvals.shape[0]} rows "
            f"of {bvals.shape[1]}",
        )
    if not np.all(np.isfinite(bvals)):
        raise InputDataError(path, "the b-value file holds NaN or infinite values")
    return bvals[0]


def read_bvecs(path) -> np.ndarray:
    """b-vectors (N, 3) from 3 rows (BIDS/FSL layout) or 3 columns; NaN kept for the caller.

    3 rows is the BIDS layout; a file of N > 3 lines of 3 values (DIPY's test
    data, some converters) is read as one vector per line, as DIPY does.
    """
    bvecs = _read_table(path, "b-vector")
    if bvecs.shape[0] == 3:
        return bvecs.T.copy()
    if bvecs.shape[1] == 3:
        logger.info("%s: one b-vector per line (3 columns) read as (N, 3)", path)
        return bvecs.copy()
    raise InputDataError(
        path,
        f"expected 3 rows of b-vectors (FSL format), found {bvecs.shape[0]} rows of "
        f"{bvecs.shape[1]}",
    )


def check_gradient_table(
    bvals,
    bvecs,
    *,
    n_volumes: int,
    dwi_name: str,
    bval_file,
    bvec_file,
    b0_threshold: float = DEFAULT_B0_THRESHOLD,
) -> GradientTable:
    """Counts, units, b0 volumes and unit directions of a gradient table.

    Parameters
    ----------
    bvals : ndarray, shape (N,)
    bvecs : ndarray, shape (N, 3)
        In whatever frame the file uses (validity does not depend on it).
    n_volumes : int
        Volumes of the DWI series.
    dwi_name : str
        Named in the count messages.
    bval_file, bvec_file : path
        Named as the culprit.
    b0_threshold : float
        b <= this (s/mm^2) is a b0 volume.

    Returns
    -------
    GradientTable
        Non-finite b-vectors of b0 volumes (some converters write NaN) are zero.
    """
    if len(bvals) != n_volumes:
        raise InputDataError(
            bval_file, f"{len(bvals)} b-values but {dwi_name} has {n_volumes} volumes"
        )
    if len(bvecs) != n_volumes:
        raise InputDataError(
            bvec_file, f"{len(bvecs)} b-vectors but {dwi_name} has {n_volumes} volumes"
        )
    weighted = bvals > b0_threshold
    if not weighted.any() and not np.any(bvals > MAX_PLAUSIBLE_BVALUE):
        raise InputDataError(
            bval_file,
            f"no diffusion-weighted volume: every b-value is <= {b0_threshold:g} "
            "s/mm^2 (b-values in ms/um^2? multiply them by 1000)",
        )
    if weighted.all():
        raise InputDataError(
            bval_file,
            f"no b0 volume (b-value <= {b0_threshold:g}): RUMBA-SD normalises by b0",
        )
    non_finite = ~np.all(np.isfinite(bvecs), axis=1)
    bad = non_finite & weighted
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputDataError(
            bvec_file,
            f"the b-vector file holds NaN or infinite values for {int(bad.sum())} "
            f"diffusion-weighted volume(s) (first: volume {first})",
        )
    if non_finite.any():
        logger.info("%s: NaN b-vectors of %d b0 volumes set to zero", bvec_file, non_finite.sum())
    bvecs = np.where(non_finite[:, None], 0.0, bvecs)
    zero = (np.linalg.norm(bvecs, axis=1) < 1e-6) & weighted
    if zero.any():
        first = int(np.flatnonzero(zero)[0])
        raise InputDataError(
            bvec_file,
            f"{int(zero.sum())} diffusion-weighted volume(s) have a zero-length b-vector "
            f"(first: volume {first}, b={bvals[first]:g}); every volume with b > "
            f"{b0_threshold:g} needs a unit direction",
        )
    try:
        return GradientTable(bvals, bvecs, b0_threshold=b0_threshold)
    except ValueError as error:
        culprit = bvec_file if "b-vector" in str(error) else bval_file
        raise InputDataError(culprit, str(error)) from error


def to_voxel_frame(gtab: GradientTable, affine, bvec_convention: str) -> GradientTable:
    """The table with b-vectors in the voxel (ijk) frame of an image of ``affine``.

    ``fsl``: undo FSL's x flip when ``det(affine) > 0``; ``ijk``: unchanged.
    """
    if bvec_convention not in BVEC_CONVENTIONS:
        raise ValueError(
            f"bvec_convention must be one of {BVEC_CONVENTIONS}, got {bvec_convention!r}"
        )
    if bvec_convention == "ijk":
        return gtab
    return GradientTable(
        gtab.bvals,
        bvecs_fsl_to_voxel(gtab.bvecs, affine),
        b0_threshold=gtab.b0_threshold,
        shell_tolerance=gtab.shell_tolerance,
    )


def check_values(data, image, path) -> int:
    """NaN/inf, values beyond float32, empty volumes, negative (non-magnitude) data.

    Works volume by volume so that the checks need little memory beyond the
    data.  Returns the number of small negative values (accepted, logged).
    """
    stored = np.dtype(image.get_data_dtype())
    slope, inter = read_scaling(image)
    scaling = f" (scl_slope={slope:g}, scl_inter={inter:g})" if (slope, inter) != (1, 0) else ""
    float32_max = float(np.finfo(np.float32).max)
    n_bad = n_negative = 0
    largest = smallest = 0.0
    empty = []
    for volume in range(data.shape[3]):
        values = data[..., volume]
        if values.dtype.kind in "fc":
            finite = np.isfinite(values)
            if not finite.all():
                n_bad += int(values.size - finite.sum())
                continue
        if not values.any():
            empty.append(volume)
            continue
        largest = max(largest, float(values.max()))
        low = float(values.min())
        if low < 0:
            smallest = min(smallest, low)
            n_negative += int((values < 0).sum())
    if n_bad:
        detail = (
            f"; the header's scaling{scaling} turns the stored {stored} values into them"
            if stored.kind in "iu"
            else "; replace them (e.g. by 0) or fix the preprocessing that produced them"
        )
        raise InputDataError(path, f"holds {n_bad} NaN or infinite values{detail}")
    if max(largest, -smallest) > float32_max:
        raise InputDataError(
            path,
            f"values reach {max(largest, -smallest):.3g}, beyond the float32 range{scaling}: "
            "the header's scaling (or the data) is corrupt",
        )
    if len(empty) == data.shape[3]:
        raise InputDataError(path, "the image is all zero")
    if empty:
        listed = ", ".join(str(v) for v in empty[:10]) + (", ..." if len(empty) > 10 else "")
        raise InputDataError(
            path,
            f"{len(empty)} volume(s) are all zero (volumes {listed}): a dropped or missing "
            "volume; remove it from the image and from the .bval/.bvec files",
        )
    if smallest < -NEGATIVE_TOLERANCE * largest:
        share = 100.0 * n_negative / data.size
        raise InputDataError(
            path,
            f"holds negative values down to {smallest:g} ({n_negative} values, {share:.2g}% "
            f"of the image; largest value {largest:g}): a diffusion magnitude image is "
            "non-negative; is this phase or signed data, or integers that overflowed their "
            f"type ({stored})?",
        )
    if n_negative:
        logger.warning(
            "%s: %d small negative values (down to %g), e.g. interpolation undershoots; "
            "the fit treats them as 0",
            path,
            n_negative,
            smallest,
        )
    return n_negative


def same_grid(image_a, image_b) -> bool:
    """True when both images have the same 3D shape and (within 1e-3 mm) affine."""
    return tuple(image_a.shape[:3]) == tuple(image_b.shape[:3]) and np.allclose(
        image_a.affine, image_b.affine, rtol=0, atol=AFFINE_TOLERANCE
    )


def check_mask(path, reference) -> np.ndarray:
    """Boolean brain mask (X, Y, Z) on the grid of ``reference``: binary, not empty.

    Parameters
    ----------
    path : path
        Mask image: 0 outside, 1 inside (any numeric type; a trailing axis of
        size 1 is accepted).
    reference : nibabel image
        The DWI series (or map) the mask must match in shape and affine.
    """
    mask_image = load_image(path, "brain mask")
    shape = tuple(int(s) for s in reference.shape[:3])
    mask_shape = tuple(int(s) for s in mask_image.shape)
    if mask_shape[3:] not in ((), (1,)) or mask_shape[:3] != shape:
        raise InputDataError(
            path, f"mask of shape {mask_shape} does not match the DWI grid {shape}"
        )
    if not np.allclose(mask_image.affine, reference.affine, rtol=0, atol=AFFINE_TOLERANCE):
        raise InputDataError(
            path,
            f"mask affine {np.round(mask_image.affine, 3).tolist()} differs from the DWI "
            f"affine {np.round(reference.affine, 3).tolist()}: the mask is on another grid; "
            "resample it onto the DWI grid",
        )
    mask = stored_data(mask_image, path).reshape(shape)
    if mask.dtype.kind in "fc" and not np.all(np.isfinite(mask)):
        raise InputDataError(path, "the brain mask holds NaN or infinite values")
    binary = (mask == 0) | (mask == 1)
    if not binary.all():
        odd = np.unique(mask[~binary])[:3]
        raise InputDataError(
            path,
            "the brain mask is not binary (values "
            + ", ".join(f"{v:g}" for v in odd)
            + " besides 0 and 1); threshold it first, e.g. fslmaths mask -thr 0.5 -bin",
        )
    mask = mask == 1
    if not mask.any():
        raise InputDataError(path, "the brain mask is empty")
    return mask


@dataclass(frozen=True)
class CheckedDwi:
    """What :func:`check_dwi_files` learnt about a series.

    Attributes
    ----------
    image : nibabel image
        The DWI series (header; data on disk).
    gtab : GradientTable
        b-vectors in the voxel (ijk) frame of ``image``.
    mask_voxels : int or None
        Voxels of the mask, when one was checked.
    """

    image: object
    gtab: GradientTable
    mask_voxels: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.image.shape)


def check_dwi_files(
    dwi_file,
    bval_file,
    bvec_file,
    *,
    mask_file=None,
    bvec_convention: str = "fsl",
    b0_threshold: float = DEFAULT_B0_THRESHOLD,
    check_data: bool = True,
) -> CheckedDwi:
    """Check one DWI series, its gradient files and (optionally) its mask.

    Image readable and 4D; b-value/b-vector counts equal to the volumes, finite,
    b in s/mm^2, unit b-vectors for every diffusion-weighted volume, a b0;
    values finite, within float32 once scaled, no all-zero volume, no deep
    negative values (``check_data``); mask on the same grid, binary, not empty.

    Parameters
    ----------
    dwi_file, bval_file, bvec_file : path
        4D NIfTI series; ``.bval`` (one row or one value per line) and ``.bvec``
        (3 rows) text files.
    mask_file : path, optional
    bvec_convention : {'fsl', 'ijk'}
        How to read the b-vectors (see the module docstring).
    b0_threshold : float
    check_data : bool
        Also read the image values (False: header and text files only).

    Returns
    -------
    CheckedDwi
    """
    image = load_dwi(dwi_file)
    bvals = read_bvals(bval_file)
    bvecs = read_bvecs(bvec_file)
    gtab = check_gradient_table(
        bvals,
        bvecs,
        n_volumes=int(image.shape[3]),
        dwi_name=Path(dwi_file).name,
        bval_file=bval_file,
        bvec_file=bvec_file,
        b0_threshold=b0_threshold,
    )
    gtab = to_voxel_frame(gtab, image.affine, bvec_convention)
    if check_data:
        check_values(stored_data(image, dwi_file), image, dwi_file)
    mask_voxels = None
    if mask_file is not None:
        mask_voxels = int(check_mask(mask_file, image).sum())
    return CheckedDwi(image=image, gtab=gtab, mask_voxels=mask_voxels)
