"""Gradient tables: validation, b0 mask, shells, frame conversion.

b-values are in s/mm^2 and b-vectors are unit vectors (zero vectors allowed
for b0 volumes).  The frame of the b-vectors is whatever the caller gives;
:func:`bvecs_fsl_to_voxel` converts BIDS/FSL b-vectors to the voxel (ijk)
frame used throughout the fit.
"""

from __future__ import annotations

import numpy as np

DEFAULT_B0_THRESHOLD = 50.0
#: b-values closer than this (s/mm^2) belong to the same shell.
DEFAULT_SHELL_TOLERANCE = 20.0
_UNIT_TOLERANCE = 0.05
#: Largest plausible b-value in s/mm^2; larger ones are taken to be in s/m^2.
MAX_PLAUSIBLE_BVALUE = 1e5


class GradientTable:
    """Validated b-values and b-vectors.

    Parameters
    ----------
    bvals : array_like, shape (N,)
        b-values in s/mm^2.
    bvecs : array_like, shape (N, 3) or (3, N)
        Gradient directions; unit vectors (within 5 %) for diffusion-weighted
        volumes; unit, zero or NaN vectors for b0 volumes (b0 rows are zeroed,
        as FSL/DIPY files often hold NaN there).
    b0_threshold : float
        Volumes with ``bval <= b0_threshold`` are b0 volumes.
    shell_tolerance : float
        b-values within this distance (s/mm^2) are grouped into one shell.

    Attributes
    ----------
    bvals : ndarray, shape (N,)
    bvecs : ndarray, shape (N, 3)
        Normalised; exactly zero for b0 volumes.
    b0s_mask : ndarray of bool, shape (N,)
    shells : ndarray, shape (S,)
        Representative (mean) b-value of each non-zero shell, ascending.
    shell_index : ndarray of int, shape (N,)
        Shell of each volume (-1 for b0 volumes).

    Examples
    --------
    >>> gtab = GradientTable([0, 1000, 1005, 2000], [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    >>> gtab.b0s_mask.tolist(), gtab.shells.tolist()
    ([True, False, False, False], [1002.5, 2000.0])
    """

    def __init__(
        self,
        bvals,
        bvecs,
        *,
        b0_threshold: float = DEFAULT_B0_THRESHOLD,
        shell_tolerance: float = DEFAULT_SHELL_TOLERANCE,
    ):
        bvals = np.asarray(bvals, dtype=np.float64).ravel()
        bvecs = np.asarray(bvecs, dtype=np.float64)
        if bvecs.ndim != 2 or 3 not in bvecs.shape:
            raise ValueError(f"b-vectors must have shape (N, 3) or (3, N), got {bvecs.shape}")
        if bvecs.shape[1] != 3:
            bvecs = bvecs.T
        if len(bvals) != len(bvecs):
            raise ValueError(
                f"{len(bvals)} b-values but {len(bvecs)} b-vectors: the counts must match"
            )
        if len(bvals) == 0:
            raise ValueError("the gradient table is empty")
        if not np.all(np.isfinite(bvals)):
            raise ValueError("b-values must be finite (found NaN or inf)")
        if np.any(bvals < 0):
            raise ValueError(f"negative b-values: {bvals[bvals < 0].tolist()}")
        if bvals.max() > MAX_PLAUSIBLE_BVALUE:
            raise ValueError(
                f"implausible b-value {bvals.max():g}: b-values must be in s/mm^2 "
                "(values above 1e5 look like s/m^2)"
            )
        self.b0_threshold = float(b0_threshold)
        self.b0s_mask = bvals <= self.b0_threshold
        if not self.b0s_mask.any():
            raise ValueError(
                f"no b0 volume (b-value <= {self.b0_threshold:g}): RUMBA-SD normalises by b0"
            )
        dwi = ~self.b0s_mask
        finite = np.isfinite(bvecs).all(axis=1)
        if not finite[dwi].all():
            first = int(np.flatnonzero(dwi & ~finite)[0])
            raise ValueError(
                f"{int((dwi & ~finite).sum())} diffusion-weighted b-vectors are not finite "
                f"(NaN or inf; first: volume {first}, b={bvals[first]:g})"
            )
        # b0 rows carry no direction: NaN there (FSL, DIPY's small_64D.bvec) means zero
        bvecs = np.where(finite[:, None], bvecs, 0.0)
        norms = np.linalg.norm(bvecs, axis=1)
        bad = dwi & (np.abs(norms - 1) > _UNIT_TOLERANCE)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} diffusion-weighted b-vectors are not unit vectors "
                f"(volume {first}: |g| = {norms[first]:.3g})"
            )
        bad_b0 = self.b0s_mask & (norms > 1e-6) & (np.abs(norms - 1) > _UNIT_TOLERANCE)
        if bad_b0.any():
            raise ValueError("b0 b-vectors must be zero or unit vectors")
        unit = np.zeros_like(bvecs)
        nonzero = norms > 1e-6
        unit[nonzero] = bvecs[nonzero] / norms[nonzero, None]
        unit[self.b0s_mask] = 0.0
        self.bvals = bvals
        self.bvecs = unit
        self.shell_tolerance = float(shell_tolerance)
        self.shells, self.shell_index = group_shells(
            bvals, b0s_mask=self.b0s_mask, tolerance=self.shell_tolerance
        )
        for array in (self.bvals, self.bvecs, self.b0s_mask, self.shells, self.shell_index):
            array.setflags(write=False)

    def __len__(self) -> int:
        return len(self.bvals)

    def __repr__(self) -> str:
        return (
            f"GradientTable(n_volumes={len(self)}, n_b0={int(self.b0s_mask.sum())}, "
            f"shells={[round(float(b)) for b in self.shells]})"
        )

    @property
    def gradients(self) -> np.ndarray:
        """``bvals[:, None] * bvecs``, shape (N, 3)."""
        return self.bvals[:, None] * self.bvecs

    @property
    def n_shells(self) -> int:
        """Number of distinct non-zero shells."""
        return len(self.shells)

    @property
    def is_cartesian_grid(self) -> bool:
        """True for q-space grid data (DSI-like): many shells, or several small ones."""
        if self.n_shells >= 8:
            return True
        if self.n_shells < 4:
            return False
        counts = np.bincount(self.shell_index[self.shell_index >= 0])
        return bool(np.median(counts) < 12)

    def subset(self, selection) -> GradientTable:
        """Gradient table of the selected volumes (boolean mask or indices)."""
        return GradientTable(
            self.bvals[selection],
            self.bvecs[selection],
            b0_threshold=self.b0_threshold,
            shell_tolerance=self.shell_tolerance,
        )


def as_gradient_table(gtab) -> GradientTable:
    """A :class:`GradientTable` from ours or from any object with ``bvals``,
    ``bvecs`` and ``b0s_mask`` (e.g. a DIPY ``GradientTable``).

    The object's ``b0_threshold`` is kept when it has one; its ``b0s_mask``
    must then agree with ``bvals <= b0_threshold``.

    Raises
    ------
    TypeError
        ``gtab`` has no ``bvals``/``bvecs``.
    ValueError
        The table is invalid (see :class:`GradientTable`) or its ``b0s_mask``
        does not follow its b-values.
    """
    if isinstance(gtab, GradientTable):
        return gtab
    if not (hasattr(gtab, "bvals") and hasattr(gtab, "bvecs")):
        raise TypeError(
            "gtab must be a gradient table: a rumba_bids.core.GradientTable or an object "
            f"with bvals, bvecs and b0s_mask (e.g. DIPY's), got {type(gtab).__name__}"
        )
    threshold = getattr(gtab, "b0_threshold", None)
    table = GradientTable(
        gtab.bvals,
        gtab.bvecs,
        b0_threshold=DEFAULT_B0_THRESHOLD if threshold is None else float(threshold),
    )
    given = getattr(gtab, "b0s_mask", None)
    if given is not None and not np.array_equal(np.asarray(given, dtype=bool), table.b0s_mask):
        raise ValueError(
            "the gradient table's b0s_mask does not match bvals <= b0_threshold "
            f"({table.b0_threshold:g}): pass b-values and b-vectors to "
            "rumba_bids.core.GradientTable with the b0_threshold you want"
        )
    return table


def group_shells(bvals, *, b0s_mask, tolerance: float = DEFAULT_SHELL_TOLERANCE):
    """Group non-zero b-values into shells.

    Sorted b-values are split wherever two neighbours differ by more than
    ``tolerance``.

    Returns
    -------
    shells : ndarray, shape (S,)
        Mean b-value of each shell, ascending.
    shell_index : ndarray of int, shape (N,)
        Shell of each volume, -1 for b0 volumes.
    """
    bvals = np.asarray(bvals, dtype=np.float64)
    shell_index = np.full(len(bvals), -1, dtype=np.intp)
    dwi = np.flatnonzero(~np.asarray(b0s_mask))
    if len(dwi) == 0:
        return np.zeros(0), shell_index
    order = dwi[np.argsort(bvals[dwi], kind="stable")]
    sorted_b = bvals[order]
    labels = np.concatenate([[0], np.cumsum(np.diff(sorted_b) > tolerance)])
    shell_index[order] = labels
    shells = np.array([sorted_b[labels == k].mean() for k in range(labels[-1] + 1)])
    return shells, shell_index


def bvecs_fsl_to_voxel(bvecs, affine) -> np.ndarray:
    """Convert FSL/BIDS b-vectors to the voxel (ijk) frame.

    FSL stores b-vectors in the image's voxel axes, but with the first axis
    flipped when the voxel-to-world affine has a positive determinant
    (radiological storage convention).  Undoing that flip gives vectors along
    the voxel axes i, j, k.

    Parameters
    ----------
    bvecs : array_like, shape (N, 3)
    affine : array_like, shape (4, 4)

    Returns
    -------
    ndarray, shape (N, 3)

    Examples
    --------
    >>> bvecs_fsl_to_voxel([[1.0, 0.0, 0.0]], np.eye(4)).tolist()
    [[-1.0, 0.0, 0.0]]
    """
    out = np.array(bvecs, dtype=np.float64, copy=True)
    if np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]) > 0:
        out[:, 0] *= -1
    return out


def voxel_to_world(vectors, affine) -> np.ndarray:
    """Rotate direction vectors from the voxel (ijk) frame to world (xyz, RAS+).

    Scaling and shear of the affine are removed (polar decomposition), so unit
    vectors stay unit vectors.  Shape (..., 3) in, (..., 3) out; NaNs pass through.
    """
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(linear)
    rotation = u @ vt
    return np.asarray(vectors, dtype=np.float64) @ rotation.T


def world_to_voxel(vectors, affine) -> np.ndarray:
    """Inverse of :func:`voxel_to_world`."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(linear)
    rotation = u @ vt
    return np.asarray(vectors, dtype=np.float64) @ rotation
