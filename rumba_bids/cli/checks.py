"""Pre-flight checks of one DWI run, before any graph is built.

Each check names the file and the problem; :func:`inspect_run` raises
:class:`DataError` (exit 65) or :class:`InputMissingError` (exit 66).
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, InputMissingError

logger = logging.getLogger("rumba_bids.cli")

#: Exceptions nibabel / numpy raise on unreadable, corrupt or truncated files.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, MemoryError)
#: Negative values down to this fraction of the largest value are interpolation
#: undershoots (treated as 0 by the fit); deeper ones mean the image is not a magnitude image.
NEGATIVE_TOLERANCE = 0.5
#: Largest distance (mm) between the affines of a mask and its DWI series.
AFFINE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class RunFacts:
    """What the pre-flight learnt about a run (used to choose model defaults)."""

    shape: tuple[int, ...]
    n_volumes: int
    n_b0: int
    shells: tuple[float, ...]
    bvals: tuple[float, ...] = ()
    mask_voxels: int | None = None

    @property
    def n_shells(self) -> int:
        return len(self.shells)


def _load_image(path: Path, what: str):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    if not path.is_file():
        raise InputMissingError(f"{what} does not exist", path=path)
    try:
        return nib.load(str(path))
    except (ImageFileError, *_READ_ERRORS) as error:
        raise DataError(f"cannot read the NIfTI header ({_short(error)})", path=path) from error


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) < 160 else text[:157] + "..."


def _read_table(path: Path, what: str, *, allow_non_finite: bool = False):
    import numpy as np

    if path is None:
        raise InputMissingError(f"no {what} file found for this run")
    if not path.is_file():
        raise InputMissingError(f"{what} file does not exist", path=path)
    try:
        values = np.loadtxt(str(path), dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as error:
        raise DataError(f"cannot parse the {what} file ({_short(error)})", path=path) from error
    if values.size == 0:
        raise DataError(f"the {what} file is empty", path=path)
    if not allow_non_finite and not np.all(np.isfinite(values)):
        raise DataError(f"the {what} file holds NaN or infinite values", path=path)
    return values


def _read_data(img, path: Path):
    import numpy as np

    try:
        data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as error:
        raise DataError(
            f"cannot read the image data; the file looks truncated or corrupt ({_short(error)})",
            path=path,
        ) from error
    return data


def inspect_run(dwi_file, bval_file, bvec_file, mask_file=None) -> RunFacts:
    """Check one run: files, image, gradients, values and mask, before any processing.

    Files present; image readable and 4D; b-value/b-vector counts equal to the
    volumes, finite, b in s/mm^2, unit b-vectors for every diffusion-weighted
    volume, a b0; values finite, within float32 once scaled, no all-zero volume,
    no deep negative values; mask on the same grid (shape and affine), binary,
    not empty.

    Parameters
    ----------
    dwi_file : path
        The DWI NIfTI image.
    bval_file, bvec_file : path or None
        FSL-format gradient files; ``None`` when none was found.
    mask_file : path, optional
        Brain mask on the same grid.

    Returns
    -------
    RunFacts

    Raises
    ------
    InputMissingError
        A file is missing (exit 66).
    DataError
        The content is unusable (exit 65).
    """
    import numpy as np

    from ..core.gradients import DEFAULT_B0_THRESHOLD, MAX_PLAUSIBLE_BVALUE, GradientTable

    dwi_file = Path(dwi_file)
    img = _load_image(dwi_file, "DWI image")
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 3 or (len(shape) == 4 and shape[3] == 1):
        raise DataError(
            f"is a 3D image of shape {shape}; a DWI run needs one volume per gradient (4D)",
            path=dwi_file,
        )
    if len(shape) != 4:
        raise DataError(
            f"has shape {shape}; expected a 4D image (x, y, z, volumes)", path=dwi_file
        )
    n_volumes = shape[3]
    bval_path = None if bval_file is None else Path(bval_file)
    bvec_path = None if bvec_file is None else Path(bvec_file)
    if bval_path is None:
        raise InputMissingError(
            f"no .bval file for this run (expected {_sibling(dwi_file, '.bval')})", path=dwi_file
        )
    if bvec_path is None:
        raise InputMissingError(
            f"no .bvec file for this run (expected {_sibling(dwi_file, '.bvec')})", path=dwi_file
        )
    bvals = _read_table(bval_path, "b-value")
    bvecs = _read_table(bvec_path, "b-vector", allow_non_finite=True)
    if bvals.shape[0] != 1 and bvals.shape[1] == 1:
        bvals = bvals.T
    if bvals.shape[0] != 1:
        raise DataError(
            f"expected one row of b-values, found {bvals.shape[0]} rows", path=bval_path
        )
    bvals = bvals[0]
    if bvecs.shape[0] != 3:
        raise DataError(
            f"expected 3 rows of b-vectors (FSL format), found {bvecs.shape[0]}", path=bvec_path
        )
    if len(bvals) != n_volumes:
        raise DataError(
            f"{len(bvals)} b-values but {dwi_file.name} has {n_volumes} volumes", path=bval_path
        )
    if bvecs.shape[1] != n_volumes:
        raise DataError(
            f"{bvecs.shape[1]} b-vectors but {dwi_file.name} has {n_volumes} volumes",
            path=bvec_path,
        )
    weighted = bvals > DEFAULT_B0_THRESHOLD
    if not weighted.any() and not np.any(bvals > MAX_PLAUSIBLE_BVALUE):
        raise DataError(
            f"no diffusion-weighted volume: every b-value is <= {DEFAULT_B0_THRESHOLD:g} "
            "s/mm^2 (b-values in ms/um^2? multiply them by 1000)",
            path=bval_path,
        )
    if weighted.all():
        raise DataError(
            f"no b0 volume (b-value <= {DEFAULT_B0_THRESHOLD:g}): RUMBA-SD normalises by b0",
            path=bval_path,
        )
    non_finite = ~np.all(np.isfinite(bvecs), axis=0)
    bad = non_finite & weighted
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"the b-vector file holds NaN or infinite values for {int(bad.sum())} "
            f"diffusion-weighted volume(s) (first: volume {first})",
            path=bvec_path,
        )
    bvecs = np.where(non_finite, 0.0, bvecs)  # converters write NaN for some b0 volumes
    norms = np.linalg.norm(bvecs, axis=0)
    zero = (norms < 1e-6) & weighted
    if zero.any():
        first = int(np.flatnonzero(zero)[0])
        raise DataError(
            f"{int(zero.sum())} diffusion-weighted volume(s) have a zero-length b-vector "
            f"(first: volume {first}, b={bvals[first]:g}); every volume with b > "
            f"{DEFAULT_B0_THRESHOLD:g} needs a unit direction",
            path=bvec_path,
        )
    try:
        gtab = GradientTable(bvals, bvecs.T)
    except ValueError as error:
        culprit = bvec_path if "b-vector" in str(error) else bval_path
        raise DataError(str(error), path=culprit) from error
    data = _read_data(img, dwi_file)
    _check_values(data, img, dwi_file)
    mask_voxels = None
    if mask_file is not None:
        mask_voxels = _check_mask(Path(mask_file), img)
    return RunFacts(
        shape=shape,
        n_volumes=n_volumes,
        n_b0=int(gtab.b0s_mask.sum()),
        shells=tuple(float(b) for b in gtab.shells),
        bvals=tuple(float(b) for b in bvals),
        mask_voxels=mask_voxels,
    )


def _check_values(data, img, path: Path) -> None:
    """NaN/inf, values beyond float32, empty volumes, negative (non-magnitude) data.

    Works volume by volume so that the checks need little memory beyond the data.
    """
    import numpy as np

    from ..interfaces.rumba import read_scaling

    stored = np.dtype(img.get_data_dtype())
    slope, inter = read_scaling(img)
    scaling = f" (scl_slope={slope:g}, scl_inter={inter:g})" if (slope, inter) != (1, 0) else ""
    float32_max = float(np.finfo(np.float32).max)
    n_bad = 0
    largest = 0.0
    smallest = 0.0
    n_negative = 0
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
        raise DataError(f"holds {n_bad} NaN or infinite values{detail}", path=path)
    if max(largest, -smallest) > float32_max:
        raise DataError(
            f"values reach {max(largest, -smallest):.3g}, beyond the float32 range{scaling}: "
            "the header's scaling (or the data) is corrupt",
            path=path,
        )
    if len(empty) == data.shape[3]:
        raise DataError("the image is all zero", path=path)
    if empty:
        listed = ", ".join(str(v) for v in empty[:10]) + (", ..." if len(empty) > 10 else "")
        raise DataError(
            f"{len(empty)} volume(s) are all zero (volumes {listed}): a dropped or missing "
            "volume; remove it from the image and from the .bval/.bvec files",
            path=path,
        )
    if smallest < -NEGATIVE_TOLERANCE * largest:
        share = 100.0 * n_negative / data.size
        raise DataError(
            f"holds negative values down to {smallest:g} ({n_negative} values, {share:.2g}% "
            f"of the image; largest value {largest:g}): a diffusion magnitude image is "
            "non-negative; is this phase or signed data, or integers that overflowed their "
            f"type ({stored})?",
            path=path,
        )
    if n_negative:
        logger.warning(
            "%s: %d small negative values (down to %g), e.g. interpolation undershoots; "
            "the fit treats them as 0",
            path,
            n_negative,
            smallest,
        )


def _check_mask(mask_path: Path, img) -> int:
    """Grid, values and size of a brain mask; returns its number of voxels."""
    import numpy as np

    mask_img = _load_image(mask_path, "brain mask")
    shape = tuple(int(s) for s in img.shape[:3])
    mask_shape = tuple(int(s) for s in mask_img.shape)
    if mask_shape[3:] not in ((), (1,)) or mask_shape[:3] != shape:
        raise DataError(
            f"mask of shape {mask_shape} does not match the DWI grid {shape}", path=mask_path
        )
    if not np.allclose(mask_img.affine, img.affine, rtol=0, atol=AFFINE_TOLERANCE):
        raise DataError(
            f"mask affine {np.round(mask_img.affine, 3).tolist()} differs from the DWI "
            f"affine {np.round(img.affine, 3).tolist()}: the mask is on another grid; "
            "resample it onto the DWI grid",
            path=mask_path,
        )
    mask = _read_data(mask_img, mask_path)
    if mask.dtype.kind in "fc" and not np.all(np.isfinite(mask)):
        raise DataError("the brain mask holds NaN or infinite values", path=mask_path)
    binary = (mask == 0) | (mask == 1)
    if not binary.all():
        odd = np.unique(mask[~binary])[:3]
        raise DataError(
            "the brain mask is not binary (values "
            + ", ".join(f"{v:g}" for v in odd)
            + " besides 0 and 1); threshold it first, e.g. fslmaths mask -thr 0.5 -bin",
            path=mask_path,
        )
    n_voxels = int(np.count_nonzero(mask))
    if n_voxels == 0:
        raise DataError("the brain mask is empty", path=mask_path)
    return n_voxels


def _sibling(dwi_file: Path, extension: str) -> str:
    name = dwi_file.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + extension
    return name + extension
