"""Pre-flight checks of one DWI run, before any graph is built.

Each check names the file and the problem; :func:`inspect_run` raises
:class:`DataError` (exit 65) or :class:`InputMissingError` (exit 66).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, InputMissingError

#: Exceptions nibabel / numpy raise on unreadable, corrupt or truncated files.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, MemoryError)


@dataclass(frozen=True)
class RunFacts:
    """What the pre-flight learnt about a run (used to choose model defaults)."""

    shape: tuple[int, ...]
    n_volumes: int
    n_b0: int
    shells: tuple[float, ...]

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


def _read_table(path: Path, what: str):
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
    if not np.all(np.isfinite(values)):
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
    """Check one run: files present, image readable and 4D, gradient counts, b0, NaNs.

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

    from ..core.gradients import GradientTable

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
    bvecs = _read_table(bvec_path, "b-vector")
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
    try:
        gtab = GradientTable(bvals, bvecs.T)
    except ValueError as error:
        raise DataError(str(error), path=bval_path) from error
    data = _read_data(img, dwi_file)
    if data.dtype.kind in "fc":
        bad = ~np.isfinite(data)
        if bad.any():
            raise DataError(
                f"holds {int(bad.sum())} NaN or infinite values; replace them (e.g. by 0) "
                "or fix the preprocessing that produced them",
                path=dwi_file,
            )
    if mask_file is not None:
        mask_path = Path(mask_file)
        mask_img = _load_image(mask_path, "brain mask")
        mask = _read_data(mask_img, mask_path)
        if mask.shape[:3] != shape[:3] or mask.squeeze().ndim != 3:
            raise DataError(
                f"mask of shape {mask.shape} does not match the DWI grid {shape[:3]}",
                path=mask_path,
            )
        if not np.any(mask):
            raise DataError("the brain mask is empty", path=mask_path)
    return RunFacts(
        shape=shape,
        n_volumes=n_volumes,
        n_b0=int(gtab.b0s_mask.sum()),
        shells=tuple(float(b) for b in gtab.shells),
    )


def _sibling(dwi_file: Path, extension: str) -> str:
    name = dwi_file.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + extension
    return name + extension
