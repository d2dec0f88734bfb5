"""Fit RUMBA-SD to a DWI series: fODF amplitudes, tissue fractions, SNR, sidecar metadata."""

from __future__ import annotations

import inspect
import logging
import os
import time

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..core.gradients import DEFAULT_B0_THRESHOLD
from ..core.kernel import DEFAULT_CSF_RESPONSE, DEFAULT_GM_RESPONSE
from ..core.rumba import RECON_TYPES, RumbaSDModel
from ..core.sphere import DEFAULT_SPHERE, NAMED_SPHERES, Sphere, get_sphere
from .errors import InputDataError
from .files import (
    image_data,
    limit_threads,
    load_dwi,
    load_mask,
    output_path,
    save_like,
)
from .gradients import load_gradient_table
from .response import read_response

logger = logging.getLogger("nipype.interface")

_MODEL = inspect.signature(RumbaSDModel).parameters
#: Default of every fit option, taken from :class:`RumbaSDModel` (defined once, there).
FIT_DEFAULTS = {
    name: _MODEL[name].default for name in ("n_iter", "recon_type", "n_coils", "R", "use_tv")
}
FIT_MODES = ("voxelwise", "global")
#: The GM compartment is switched on by ``gm_response='auto'`` only with this many shells.
GM_AUTO_MIN_SHELLS = 3
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
            reason = f"auto: on, the data have {n_shells} non-zero shells (>= 3)"
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


def rumba_metadata(model: RumbaSDModel, fit, *, response: dict, gm_choice: str) -> dict:
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
        BLAS threads of the fit.
    chunk_size : int, optional
        Voxels per batch of the fit.
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
        **options,
    )
    data = image_data(dwi, dwi_file)
    with limit_threads(n_threads):
        try:
            result = model.fit(data, mask=mask)
        except ValueError as exc:  # NaN/inf voxels in the mask
            raise InputDataError(dwi_file, str(exc)) from exc
    del data

    def out(suffix, ext=".nii.gz"):
        return output_path(dwi_file, suffix, out_dir, ext=ext)

    outputs = {
        # an intermediate the size of voxels x directions: uncompressed is faster
        "fod_amplitudes": save_like(result.odf(), dwi, out("_fodamplitudes", ".nii")),
        "directions_file": out("_directions", ".txt"),
    }
    np.savetxt(outputs["directions_file"], model.sphere.vertices, fmt="%.17g")
    for name in ("f_wm", "f_gm", "f_csf", "f_iso", "snr"):
        outputs[name] = save_like(getattr(result, name), dwi, out("_" + name.replace("_", "")))
    outputs["metadata"] = rumba_metadata(model, result, response=response, gm_choice=gm_choice)
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
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="BLAS threads")


class _FitRumbaOutputSpec(TraitedSpec):
    fod_amplitudes = File(exists=True, desc="fODF on the sphere (X, Y, Z, M), float32")
    directions_file = File(exists=True, desc="sphere directions (M x 3 text, voxel frame)")
    f_wm = File(exists=True, desc="white-matter fraction (sum of the fODF)")
    f_gm = File(exists=True, desc="grey-matter fraction")
    f_csf = File(exists=True, desc="CSF fraction")
    f_iso = File(exists=True, desc="isotropic fraction f_gm + f_csf")
    snr = File(exists=True, desc="S0 / sigma from the fitted noise level")
    metadata = traits.Dict(desc="Model, ResponseFunction and OrientationEncoding for sidecars")


class FitRumba(SimpleInterface):
    """RUMBA-SD fit of a DWI series (see :func:`fit_rumba_files`).

    BLAS runs with ``num_threads`` threads (through :mod:`threadpoolctl`); give
    the node the same ``n_procs``, and ``mem_gb`` from
    :func:`rumba_bids.workflows.rumba.estimate_mem_gb`, so that schedulers
    reserve what the fit uses.  Progress is logged to ``nipype.interface``
    at most every :data:`PROGRESS_INTERVAL` seconds.
    """

    input_spec = _FitRumbaInputSpec
    output_spec = _FitRumbaOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        optional = {
            name: getattr(inputs, name) if isdefined(getattr(inputs, name)) else None
            for name in ("mask_file", "chunk_size")
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
                n_threads=inputs.num_threads,
                n_iter=inputs.n_iter,
                recon_type=inputs.recon_type,
                n_coils=inputs.n_coils,
                R=inputs.R,
                use_tv=inputs.use_tv,
                **optional,
            )
        )
        return runtime
