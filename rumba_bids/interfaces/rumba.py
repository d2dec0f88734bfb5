"""Fit RUMBA-SD to a DWI series: fODF amplitudes, tissue fractions, SNR, sidecar metadata.

The voxel-wise fit runs in blocks of voxels sized to a memory limit
(:func:`~rumba_bids.core.memory.choose_block_voxels`, from the byte model of
:mod:`rumba_bids.core.memory`), writing
the fODF amplitudes into their file block by block (:func:`write_fod_volumes`, through a
buffer of a few direction volumes), so a series of any size fits in the
memory it is given, with results that do not depend on the block size.  The
global fit (needed for TV) holds every voxel and is refused up front when it
cannot fit (:class:`~rumba_bids.core.memory.InsufficientMemoryError`).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..core import kernels
from ..core.gradients import DEFAULT_B0_THRESHOLD
from ..core.kernel import DEFAULT_CSF_RESPONSE, DEFAULT_GM_RESPONSE, GM_MIN_SHELLS
from ..core.memory import choose_block_voxels, fod_volumes_per_write
from ..core.rumba import RECON_TYPES, RumbaSDModel, gather_voxels
from ..core.sphere import (
    DEFAULT_FOD_SCALE,
    DEFAULT_SPHERE,
    FOD_SCALES,
    NAMED_SPHERES,
    Sphere,
    fod_scale_factor,
    get_sphere,
)
from .errors import InputDataError
from .files import (
    image_data,
    image_values,
    load_dwi,
    load_mask,
    output_path,
    save_like,
)
from .gradients import load_gradient_table
from .response import read_response
from .validation import read_scaling

logger = logging.getLogger("nipype.interface")

_MODEL = inspect.signature(RumbaSDModel).parameters
#: Default of every fit option, taken from :class:`RumbaSDModel` (defined once, there).
FIT_DEFAULTS = {
    name: _MODEL[name].default for name in ("n_iter", "recon_type", "n_coils", "R", "use_tv")
}
FIT_MODES = ("voxelwise", "global")
#: The GM compartment is switched on by ``gm_response='auto'`` only with this many shells.
GM_AUTO_MIN_SHELLS = GM_MIN_SHELLS
MODEL_DESCRIPTION = (
    "RUMBA-SD: Robust and Unbiased Model-BAsed Spherical Deconvolution "
    "(Canales-Rodriguez et al., PLOS ONE 10(10): e0138910, 2015), fitted by rumba-bids"
)
MODEL_URL = "https://doi.org/10.1371/journal.pone.0138910"
#: Seconds between two progress messages of a running fit.
PROGRESS_INTERVAL = 5.0


def resolve_sphere(sphere) -> Sphere:
    """A named sphere, or the (M, 3) unit vectors in a text file (voxel frame)."""
    if sphere in NAMED_SPHERES:
        return get_sphere(sphere)
    if isinstance(sphere, str) and os.path.isfile(sphere):
        try:
            vertices = np.loadtxt(sphere, ndmin=2)
            name = os.path.basename(sphere)
            return Sphere(vertices if vertices.shape[1] == 3 else vertices.T, name=name)
        except ValueError as exc:
            raise InputDataError(sphere, f"not a list of unit vectors: {exc}") from exc
    raise ValueError(
        f"unknown sphere {sphere!r}: use one of {', '.join(sorted(NAMED_SPHERES))} "
        "or the path of a text file of unit vectors (one x y z per line)"
    )


def resolve_isotropic(gm_response, csf_response, n_shells: int):
    """Apply the ``'auto'`` GM rule; return (gm, csf, reason for the GM choice).

    The GM compartment can only be separated from CSF and WM with at least
    :data:`GM_AUTO_MIN_SHELLS` non-zero shells, so ``'auto'`` switches it on
    (at the default diffusivity) only then.

    Examples
    --------
    >>> resolve_isotropic('auto', 3e-3, 1)[0] is None
    True
    >>> resolve_isotropic('auto', 3e-3, 3)[0] == DEFAULT_GM_RESPONSE
    True
    """
    if gm_response == "auto":
        if n_shells >= GM_AUTO_MIN_SHELLS:
            gm = DEFAULT_GM_RESPONSE
            reason = (
                f"auto: on, the data have {n_shells} non-zero shells (>= {GM_AUTO_MIN_SHELLS})"
            )
        else:
            gm = None
            reason = (
                f"auto: off, the data have {n_shells} non-zero shell(s); "
                f"GM needs >= {GM_AUTO_MIN_SHELLS}"
            )
    elif gm_response is None:
        gm, reason = None, "off (requested)"
    else:
        gm, reason = float(gm_response), "on (requested)"
    return gm, (None if csf_response is None else float(csf_response)), reason


class ProgressLogger:
    """``progress(fraction, elapsed)`` callback logging at most every ``interval`` s."""

    def __init__(self, label: str, *, interval: float = PROGRESS_INTERVAL, log=logger):
        self.label = label
        self.interval = interval
        self.log = log
        self._last = -np.inf

    def __call__(self, fraction: float, elapsed: float) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and fraction < 1:
            return
        self._last = now
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        self.log.info(
            "%s: %5.1f%% done, %.0f s elapsed, ETA %.0f s",
            self.label,
            100 * fraction,
            elapsed,
            eta,
        )


def fod_units(scale: str = DEFAULT_FOD_SCALE, *, sphere: str | None = None) -> str:
    """Sidecar ``Units`` of the fODF outputs (SH, amplitudes, peaks, peak values).

    Examples
    --------
    >>> fod_units("density").split(":")[0]
    'fODF density on the unit sphere, 1/sr'
    """
    if scale not in FOD_SCALES:
        raise ValueError(f"fod scale must be one of {FOD_SCALES}, got {scale!r}")
    if scale == "density":
        return (
            "fODF density on the unit sphere, 1/sr: its integral over the sphere is the "
            "white-matter fraction f_wm (SH: c00 * sqrt(4 pi) = f_wm); independent of the "
            "sphere (weight of each direction x M / (4 pi))"
        )
    return (
        "fODF weights of the M directions of the fitted sphere"
        + (f" ({sphere})" if sphere else "")
        + ", summing to the white-matter fraction f_wm (DIPY RumbaFit.odf scale; "
        "depends on the sphere: density = weight x M / (4 pi))"
    )


def rumba_metadata(
    model: RumbaSDModel, fit, *, response: dict, gm_choice: str, fod_scale=DEFAULT_FOD_SCALE
) -> dict:
    """Sidecar metadata of a fit: ``Model``, ``ResponseFunction``, amplitudes encoding."""
    fitted = fit.mask
    parameters = {
        "Iterations": model.n_iter,
        "NoiseModel": "Rician" if model.noise_order == 1 else "noncentral chi",
        "ReconType": model.recon_type,
        "NCoils": model.n_coils,
        "AccelerationFactor": model.R,
        "Fit": "voxelwise" if model.voxelwise else "global",
        "TotalVariation": model.use_tv,
        "Sphere": model.sphere.name,
        "SphereDirections": len(model.sphere),
        "FODScale": fod_scale,
        "GMCompartment": model.gm_response is not None,
        "GMDiffusivity": model.gm_response,
        "GMChoice": gm_choice,
        "CSFCompartment": model.csf_response is not None,
        "CSFDiffusivity": model.csf_response,
        "B0Threshold": model.gtab.b0_threshold,
        "Shells": [round(float(b), 1) for b in model.gtab.shells],
        "FittedVoxels": int(fitted.sum()),
        "ExcludedVoxels": int(fit.n_excluded),
        "MedianSNR": float(np.median(fit.snr[fitted])) if fitted.any() else None,
    }
    return {
        "Model": {"Description": MODEL_DESCRIPTION, "URL": MODEL_URL, "Parameters": parameters},
        "ResponseFunction": response,
        "OrientationEncoding": {
            "amplitudes": {
                "Type": "amplitudes",
                "EncodingAxis": 3,
                "Reference": "ijk",
                "AmplitudesDirections": np.round(model.sphere.vertices, 8).tolist(),
            }
        },
    }


def values_itemsize(image) -> int:
    """Bytes per value of ``np.asanyarray(image.dataobj)``: the stored type, or float64
    when the header scales the values (``scl_slope``/``scl_inter``)."""
    slope, inter = read_scaling(image)
    if slope != 1.0 or inter != 0.0:
        return 8
    return np.dtype(image.get_data_dtype()).itemsize


def memory_model(
    n_volumes: int, *, bvals=None, sphere=DEFAULT_SPHERE, fit="voxelwise", use_tv=False
) -> RumbaSDModel:
    """A model of the sizes of a fit (for memory estimates only; responses are nominal).

    Parameters
    ----------
    n_volumes : int
        Volumes of the DWI series.
    bvals : array_like, optional
        Its b-values (default: one b0 and ``n_volumes - 1`` volumes at b=1000).
    sphere, fit, use_tv
        As for :func:`fit_rumba_files`.
    """
    from ..core.gradients import GradientTable

    if bvals is None:
        bvals = np.r_[0.0, np.full(n_volumes - 1, 1000.0)]
    bvals = np.asarray(bvals, dtype=float)
    bvecs = np.zeros((len(bvals), 3))
    bvecs[bvals > DEFAULT_B0_THRESHOLD, 2] = 1.0
    gtab = GradientTable(bvals, bvecs)
    return RumbaSDModel(
        gtab,
        n_iter=1,
        sphere=resolve_sphere(sphere),
        voxelwise=fit == "voxelwise" and not use_tv,
        use_tv=use_tv,
    )


def create_nifti(reference, path, n_volumes: int) -> dict:
    """Write a float32 NIfTI file (X, Y, Z, n_volumes) of zeros on the grid of ``reference``.

    The file is sparse until written; returns the keyword arguments of
    :class:`numpy.memmap` that map its data (Fortran order, as NIfTI stores it).
    """
    import nibabel as nib

    klass = nib.Nifti2Image if isinstance(reference.header, nib.Nifti2Header) else nib.Nifti1Image
    header = klass.header_class.from_header(reference.header)
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    shape = (*reference.shape[:3], int(n_volumes))
    image = klass(np.broadcast_to(np.float32(0), shape), reference.affine, header)
    image.update_header()
    header = image.header
    header["vox_offset"] = 0  # let write_to place the data after the extensions
    dtype = header.get_data_dtype()
    with open(path, "wb") as handle:
        header.write_to(handle)
        offset = int(header["vox_offset"])
        handle.truncate(offset + int(np.prod(shape)) * dtype.itemsize)
    return {"filename": path, "dtype": dtype, "offset": offset, "shape": shape, "order": "F"}


def write_fod_volumes(fod_file, odf, voxels, factor, *, rows=None, fresh=False) -> None:
    """Write fODF amplitudes of some voxels into the direction volumes of a NIfTI file.

    A few directions at a time (:func:`~rumba_bids.core.memory.fod_volumes_per_write`):
    their volumes are read from the file (the other blocks' voxels; zeros,
    not read, in a ``fresh`` file), the voxels' amplitudes are transposed and
    scattered into them (:func:`~rumba_bids.core.kernels.scatter_columns`),
    and they are written back in one sequential write each.  Measured on the whole-head
    demo (224,135 voxels, 724 directions): 1.2-2.3 s, against 5.7-7.9 s for a
    scatter through a memory map and 6.4 s for nibabel writing the grid.

    Parameters
    ----------
    fod_file : dict
        :func:`create_nifti`'s memory-map arguments of the (X, Y, Z, M) file.
    odf : ndarray, shape (n, M) or (K, M) with ``rows``
        Amplitudes, voxel by voxel (a view of the fit's parameters is fine).
    voxels : ndarray of int, shape (n,)
        Fortran-order flat indices of the voxels in the (X, Y, Z) grid.
    factor : float
        The amplitudes are written multiplied by it (:func:`fod_scale_factor`).
    rows : ndarray of int, shape (n,), optional
        Rows of ``odf`` holding the n voxels (default: all rows, in order).
    fresh : bool
        The file holds only zeros (just made by :func:`create_nifti`).
    """
    shape, dtype = fod_file["shape"], np.dtype(fod_file["dtype"])
    n_dir, grid = int(shape[3]), int(np.prod(shape[:3]))
    block = fod_volumes_per_write(grid, n_dir)
    rows = np.arange(len(voxels)) if rows is None else np.asarray(rows)
    voxels = np.asarray(voxels)
    # zeros where no voxel is written: every block of directions scatters the same voxels
    buffer = (np.zeros if fresh else np.empty)((block, grid), dtype=np.float32)
    swapped = not dtype.isnative
    with open(fod_file["filename"], "r+b") as handle:
        for first in range(0, n_dir, block):
            part = buffer[: min(block, n_dir - first)]
            offset = fod_file["offset"] + first * grid * 4
            handle.seek(offset)
            if not fresh and handle.readinto(part) != part.nbytes:
                raise OSError(f"{fod_file['filename']}: shorter than its header says")
            if swapped and not fresh:
                part.byteswap(inplace=True)
            kernels.scatter_columns(odf, rows, first, factor, voxels, part)
            if swapped:
                part.byteswap(inplace=True)
            handle.seek(offset)
            handle.write(part)


class _BlockProgress:
    """Maps the progress of one block onto the whole fit."""

    def __init__(self, progress, total: int):
        self.progress = progress
        self.total = max(int(total), 1)
        self.done = 0
        self.size = 0
        self.start = time.perf_counter()

    def __call__(self, fraction: float, elapsed: float) -> None:
        overall = (self.done + fraction * self.size) / self.total
        self.progress(overall, time.perf_counter() - self.start)


@dataclass
class VoxelwiseResult:
    """What :func:`rumba_metadata` needs from a fit made block by block."""

    mask: np.ndarray
    snr: np.ndarray
    n_excluded: int
    n_blocks: int


def fit_voxelwise_blocks(
    model, image, dwi_file, mask, fod_path, *, block_voxels=None, fod_factor=1.0
):
    """Voxel-wise fit of ``image`` block by block; fODF amplitudes go to ``fod_path``.

    Voxels are taken in the order NIfTI stores them (x fastest, Fortran order);
    each block of ``block_voxels`` consecutive masked voxels (a multiple of the
    model's chunk size) is gathered, converted to float32 and fitted on its
    own, and its fODF written into ``fod_path`` (:func:`write_fod_volumes`).
    Memory is thus bounded by the block, and the
    results do not depend on the block size, bit for bit (the same chunks of
    voxels are iterated).  Voxels whose mean b0 is not positive are excluded
    before the blocks are formed, as :meth:`RumbaSDModel.fit` does.

    Parameters
    ----------
    model : RumbaSDModel
    image : nibabel image
        The 4D series (X, Y, Z, N).
    dwi_file : str
        Named in error messages.
    mask : ndarray of bool (X, Y, Z) or None
    fod_path : str
        The fODF amplitudes (X, Y, Z, M) are written there (float32 NIfTI).
    block_voxels : int, optional
        Voxels per block (default: all in one block).
    fod_factor : float
        The fODF weights are written multiplied by it (see :func:`fod_scale_factor`).

    Returns
    -------
    maps : dict
        ``f_wm``, ``f_gm``, ``f_csf``, ``f_iso``, ``snr`` float32 arrays (X, Y, Z).
    result : VoxelwiseResult
    """
    shape = image.shape[:3]
    values = image_values(image, dwi_file)
    inside = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    flat = np.flatnonzero(inside.ravel(order="F"))
    b0_volumes = np.flatnonzero(model.gtab.b0s_mask)
    step = block_voxels or max(len(flat), 1)
    keep = np.empty(len(flat), dtype=bool)
    for start in range(0, len(flat), step):
        index = np.unravel_index(flat[start : start + step], shape, order="F")
        b0 = np.stack([values[..., v][index] for v in b0_volumes], axis=1)
        keep[start : start + step] = b0.astype(model.dtype).mean(axis=1) > 0
    n_excluded = int((~keep).sum())
    if n_excluded:
        logger.warning("%d voxels with non-positive b0 signal are excluded", n_excluded)
    fitted = flat[keep]
    del keep, flat
    maps = {name: np.zeros(shape, dtype=np.float32) for name in ("f_wm", "f_gm", "f_csf", "snr")}
    fod_file = create_nifti(image, fod_path, len(model.sphere))
    progress = model.progress
    block_progress = None if progress is None else _BlockProgress(progress, len(fitted))
    model.progress = block_progress
    n_blocks = 0
    try:
        for start in range(0, len(fitted), step):
            voxels = fitted[start : start + step]
            index = np.unravel_index(voxels, shape, order="F")
            block = gather_voxels(values, voxels, order="F").astype(np.float32)
            if block_progress is not None:
                block_progress.size = len(block)
            try:
                result = model.fit(block)
            except ValueError as exc:  # NaN/inf voxels in the mask
                raise InputDataError(dwi_file, str(exc)) from exc
            del block
            write_fod_volumes(
                fod_file, result.odf(dtype=None), voxels, fod_factor, fresh=n_blocks == 0
            )
            for name in maps:
                maps[name][index] = getattr(result, name)
            if block_progress is not None:
                block_progress.done += len(result.snr)
            n_blocks += 1
            del result
    finally:
        model.progress = progress
    maps["f_iso"] = maps["f_gm"] + maps["f_csf"]
    fitted_mask = np.zeros(shape, dtype=bool, order="F")
    fitted_mask.ravel(order="K")[fitted] = True
    return maps, VoxelwiseResult(
        mask=np.ascontiguousarray(fitted_mask),
        snr=maps["snr"],
        n_excluded=n_excluded,
        n_blocks=n_blocks,
    )


def fit_rumba_files(
    dwi_file,
    bval_file,
    bvec_file,
    response_file,
    out_dir,
    *,
    mask_file=None,
    gm_response="auto",
    csf_response=DEFAULT_CSF_RESPONSE,
    fit="voxelwise",
    sphere=DEFAULT_SPHERE,
    b0_threshold=DEFAULT_B0_THRESHOLD,
    n_threads=None,
    chunk_size=None,
    max_memory_gb=None,
    fod_scale=DEFAULT_FOD_SCALE,
    **options,
) -> dict:
    """Fit RUMBA-SD to files and write the results in ``out_dir``.

    Parameters
    ----------
    dwi_file : str
        4D series (X, Y, Z, N).
    bval_file, bvec_file : str
        Checked gradients, b-vectors in the voxel frame (:class:`CheckGradients`).
    response_file : str
        Response JSON written by :class:`EstimateResponse`.
    out_dir : str
    mask_file : str, optional
        Brain mask on the DWI grid (default: every voxel).
    gm_response : float, None or 'auto'
        GM diffusivity (mm^2/s); None: off; 'auto': see :func:`resolve_isotropic`.
    csf_response : float or None
        CSF diffusivity (mm^2/s); None: off.
    fit : {'voxelwise', 'global'}
    sphere : str
        Sphere name or vertex file, see :func:`resolve_sphere`.
    b0_threshold : float
    n_threads : int, optional
        Threads of the fit (each with one BLAS thread; default: every CPU the
        process may use).  Results do not depend on it.
    chunk_size : int, optional
        Voxels per batch of the fit.
    max_memory_gb : float, optional
        Memory the fit may use (GB).  The voxel-wise fit then runs in blocks
        of voxels small enough (results are identical); the global fit, which
        needs every voxel at once, fails up front when it cannot fit.
        Default: no limit (one block).
    fod_scale : {'density', 'weights'}
        Unit of the fODF amplitudes written (see :func:`fod_scale_factor`):
        a density on the sphere (1/sr, integral f_wm; default) or the raw
        per-direction weights (sum f_wm, DIPY's scale).
    **options
        ``n_iter``, ``recon_type``, ``n_coils``, ``R``, ``use_tv`` of :class:`RumbaSDModel`.

    Returns
    -------
    dict
        Paths ``fod_amplitudes`` (X, Y, Z, M), ``directions_file`` (M x 3 text),
        ``f_wm``, ``f_gm``, ``f_csf``, ``f_iso``, ``snr`` (3D), and ``metadata``.
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be 'voxelwise' or 'global', got {fit!r}")
    if fod_scale not in FOD_SCALES:
        raise ValueError(f"fod_scale must be one of {FOD_SCALES}, got {fod_scale!r}")
    dwi = load_dwi(dwi_file)
    gtab = load_gradient_table(bval_file, bvec_file, b0_threshold=b0_threshold)
    if len(gtab) != dwi.shape[3]:
        raise InputDataError(
            bval_file, f"{len(gtab)} b-values but {dwi_file} has {dwi.shape[3]} volumes"
        )
    wm_response, response = read_response(response_file)
    gm, csf, gm_choice = resolve_isotropic(gm_response, csf_response, gtab.n_shells)
    logger.info("RUMBA-SD GM compartment %s", gm_choice)
    mask = None if mask_file is None else load_mask(mask_file, dwi, dwi_file)
    model = RumbaSDModel(
        gtab,
        wm_response=wm_response,
        gm_response=gm,
        csf_response=csf,
        voxelwise=fit == "voxelwise",
        sphere=resolve_sphere(sphere),
        chunk_size=chunk_size,
        progress=ProgressLogger(f"RUMBA-SD fit of {os.path.basename(dwi_file)}"),
        n_threads=n_threads,
        **options,
    )

    def out(suffix, ext=".nii.gz"):
        return output_path(dwi_file, suffix, out_dir, ext=ext)

    itemsize = values_itemsize(dwi)
    n_voxels = None if mask is None else int(mask.sum())
    block_voxels = None
    if max_memory_gb is not None:
        block_voxels = choose_block_voxels(
            model,
            dwi.shape,
            max_bytes=float(max_memory_gb) * 1e9,
            values_itemsize=itemsize,
            n_voxels=n_voxels,
        )
    # an intermediate the size of voxels x directions: uncompressed is faster
    outputs = {"fod_amplitudes": out("_fodamplitudes", ".nii")}
    fod_factor = fod_scale_factor(len(model.sphere), fod_scale)
    if model.voxelwise:
        maps, result = fit_voxelwise_blocks(
            model,
            dwi,
            dwi_file,
            mask,
            outputs["fod_amplitudes"],
            block_voxels=block_voxels,
            fod_factor=fod_factor,
        )
        if result.n_blocks > 1:
            logger.info(
                "RUMBA-SD fitted in %d blocks of %d voxels (memory limit %.2f GB)",
                result.n_blocks,
                block_voxels,
                max_memory_gb,
            )
    else:
        data = image_data(dwi, dwi_file)
        try:
            result = model.fit(data, mask=mask)
        except ValueError as exc:  # NaN/inf voxels in the mask
            raise InputDataError(dwi_file, str(exc)) from exc
        del data
        fitted = np.flatnonzero(result.mask)  # C order, the rows of the fODF grid
        shape = result.mask.shape
        write_fod_volumes(
            create_nifti(dwi, outputs["fod_amplitudes"], len(model.sphere)),
            result.odf(dtype=None).reshape(-1, len(model.sphere)),
            np.ravel_multi_index(np.unravel_index(fitted, shape), shape, order="F"),
            fod_factor,
            rows=fitted,
            fresh=True,
        )
        maps = {name: getattr(result, name) for name in ("f_wm", "f_gm", "f_csf", "f_iso", "snr")}
    outputs["directions_file"] = out("_directions", ".txt")
    np.savetxt(outputs["directions_file"], model.sphere.vertices, fmt="%.17g")
    for name in ("f_wm", "f_gm", "f_csf", "f_iso", "snr"):
        outputs[name] = save_like(maps[name], dwi, out("_" + name.replace("_", "")))
    outputs["metadata"] = rumba_metadata(
        model, result, response=response, gm_choice=gm_choice, fod_scale=fod_scale
    )
    return outputs


class _FitRumbaInputSpec(BaseInterfaceInputSpec):
    dwi_file = File(resolve=True, mandatory=True, desc="4D diffusion-weighted series")
    bval_file = File(resolve=True, mandatory=True, desc="checked b-values (CheckGradients)")
    bvec_file = File(
        resolve=True, mandatory=True, desc="b-vectors in the voxel frame (CheckGradients)"
    )
    response_file = File(
        resolve=True, mandatory=True, desc="white-matter response JSON (EstimateResponse)"
    )
    mask_file = File(resolve=True, desc="brain mask on the DWI grid (default: all voxels)")
    b0_threshold = traits.Float(DEFAULT_B0_THRESHOLD, usedefault=True, desc="s/mm^2")
    gm_response = traits.Either(
        traits.Enum("auto"),
        None,
        traits.Float,
        default="auto",
        usedefault=True,
        desc="GM diffusivity (mm^2/s); None: off; 'auto': on only with >= 3 shells",
    )
    csf_response = traits.Either(
        traits.Float,
        None,
        default=DEFAULT_CSF_RESPONSE,
        usedefault=True,
        desc="CSF diffusivity (mm^2/s); None: off",
    )
    n_iter = traits.Int(FIT_DEFAULTS["n_iter"], usedefault=True, desc="RUMBA iterations")
    recon_type = traits.Enum(
        FIT_DEFAULTS["recon_type"],
        *(t for t in RECON_TYPES if t != FIT_DEFAULTS["recon_type"]),
        usedefault=True,
        desc="'smf' (Rician noise) or 'sos' (noncentral chi, n_coils channels)",
    )
    n_coils = traits.Int(FIT_DEFAULTS["n_coils"], usedefault=True, desc="receiver coils (sos)")
    R = traits.Int(FIT_DEFAULTS["R"], usedefault=True, desc="acceleration factor")
    fit = traits.Enum(*FIT_MODES, usedefault=True, desc="voxel-wise or global (4D) fit")
    use_tv = traits.Bool(
        FIT_DEFAULTS["use_tv"], usedefault=True, desc="total variation (global fit only)"
    )
    sphere = traits.Str(
        DEFAULT_SPHERE, usedefault=True, desc="sphere name or text file of unit vectors"
    )
    chunk_size = traits.Int(desc="voxels per batch (default: the core's)")
    fod_scale = traits.Enum(
        DEFAULT_FOD_SCALE,
        *(scale for scale in FOD_SCALES if scale != DEFAULT_FOD_SCALE),
        usedefault=True,
        desc="unit of the fODF amplitudes: density on the sphere (1/sr, integral f_wm) or "
        "per-direction weights (sum f_wm, DIPY's scale)",
    )
    max_memory_gb = traits.Float(
        nohash=True,
        desc="memory the fit may use (GB): the voxel-wise fit runs in blocks of voxels "
        "that fit (identical results); default: no limit",
    )
    n_threads = traits.Int(
        nohash=True,
        desc="threads of the fit, each with one BLAS thread (default: every CPU the "
        "process may use); give the node the same n_procs",
    )


class _FitRumbaOutputSpec(TraitedSpec):
    fod_amplitudes = File(
        exists=True, desc="fODF on the sphere (X, Y, Z, M), float32, in the unit fod_scale"
    )
    directions_file = File(exists=True, desc="sphere directions (M x 3 text, voxel frame)")
    f_wm = File(exists=True, desc="white-matter fraction (sum of the fODF)")
    f_gm = File(exists=True, desc="grey-matter fraction")
    f_csf = File(exists=True, desc="CSF fraction")
    f_iso = File(exists=True, desc="isotropic fraction f_gm + f_csf")
    snr = File(exists=True, desc="S0 / sigma from the fitted noise level")
    metadata = traits.Dict(desc="Model, ResponseFunction and OrientationEncoding for sidecars")


class FitRumba(SimpleInterface):
    """RUMBA-SD fit of a DWI series (see :func:`fit_rumba_files`).

    The fit runs on ``n_threads`` threads, BLAS on one thread each; give the
    node the same ``n_procs``, and ``mem_gb`` from
    :func:`rumba_bids.workflows.rumba.estimate_mem_gb` (and that value as
    ``max_memory_gb`` when it is capped), so that schedulers reserve what the
    fit uses.  Progress is logged to ``nipype.interface`` at most every
    :data:`PROGRESS_INTERVAL` seconds.
    """

    input_spec = _FitRumbaInputSpec
    output_spec = _FitRumbaOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        optional = {
            name: getattr(inputs, name) if isdefined(getattr(inputs, name)) else None
            for name in ("mask_file", "chunk_size", "max_memory_gb", "n_threads")
        }
        self._results.update(
            fit_rumba_files(
                inputs.dwi_file,
                inputs.bval_file,
                inputs.bvec_file,
                inputs.response_file,
                runtime.cwd,
                gm_response=inputs.gm_response,
                csf_response=inputs.csf_response,
                fit=inputs.fit,
                sphere=inputs.sphere,
                b0_threshold=inputs.b0_threshold,
                n_iter=inputs.n_iter,
                recon_type=inputs.recon_type,
                n_coils=inputs.n_coils,
                R=inputs.R,
                use_tv=inputs.use_tv,
                fod_scale=inputs.fod_scale,
                **optional,
            )
        )
        return runtime
