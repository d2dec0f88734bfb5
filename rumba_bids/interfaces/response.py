"""White-matter response estimation: default, FA in a ROI, recursive, or from a file.

The response is written twice: as JSON (:meth:`ResponseEstimate.to_dict`,
read back by :class:`~rumba_bids.interfaces.rumba.FitRumba`) and as text --
one line ``l1 l2 l3 S0`` per shell for tensor responses, or one line of zonal
SH coefficients (orthonormal ``Y_l0``, ``l = 0, 2, ...``, data units, the
convention of MRtrix3 response files) for the recursive response.
"""

from __future__ import annotations

import inspect
import json
import logging
import os

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
from ..core.response import (
    METHODS,
    ResponseEstimate,
    default_response,
    fa_roi_response,
    recursive_response,
    response_shells_problem,
)
from ..core.shm import n_sh_coefficients
from .errors import InputDataError
from .files import image_data, limit_threads, load_dwi, load_mask, output_path, require_file
from .gradients import load_gradient_table

logger = logging.getLogger("nipype.interface")

_FA = inspect.signature(fa_roi_response).parameters
_RECURSIVE = inspect.signature(recursive_response).parameters


def read_response(path):
    """Read a response file; return (``wm_response`` for the model, BEP016 sidecar dict).

    Accepts the JSON written by :class:`EstimateResponse` (any
    :meth:`ResponseEstimate.to_dict` output) or a text file of three
    eigenvalues (mm^2/s), optionally followed by S0.
    """
    estimate = load_response_estimate(path)
    return estimate.wm_response, response_sidecar(estimate)


def load_response_estimate(path) -> ResponseEstimate:
    """The :class:`ResponseEstimate` in a JSON or eigenvalue text file (:func:`read_response`)."""
    require_file(path, "response file")
    try:
        with open(path) as handle:
            text = handle.read()
        if text.lstrip().startswith("{"):
            return ResponseEstimate.from_dict(json.loads(text))
        values = np.loadtxt(path, ndmin=1).ravel()
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise InputDataError(path, f"not a response description: {exc}") from exc
    if values.size not in (3, 4):
        raise InputDataError(
            path, f"a text response holds 3 eigenvalues and optionally S0, got {values.size}"
        )
    return ResponseEstimate(
        method="file",
        evals=values[:3],
        S0=float(values[3]) if values.size == 4 else None,
        ratio=float(values[1] / values[0]),
    )


def check_response_file(path, data_shells, *, data=None) -> ResponseEstimate:
    """The response in ``path``, refused when it does not apply to data with ``data_shells``.

    Called by the command line's pre-flight check (before anything runs) and
    by :class:`EstimateResponse` (method ``'file'``), so both accept the same
    files; see :func:`rumba_bids.core.response.response_shells_problem`.

    ``data`` (the DWI file, optional) is named at the end of the message.

    Raises
    ------
    InputDataError
        Not a response file, or estimated at other shells (both sets named).
    """
    estimate = load_response_estimate(path)
    problem = response_shells_problem(estimate, data_shells)
    if problem is not None:
        where = "" if data is None else f" (data: {os.path.basename(data)})"
        raise InputDataError(path, problem + where)
    return estimate


def response_sidecar(estimate: ResponseEstimate) -> dict:
    """``ResponseFunction`` sidecar entry (BEP016 draft) plus provenance.

    ``Type: eigen`` with ``Values`` ``[l1, l2, l3, S0]`` (one list per shell
    for per-shell responses; S0 is 1, the normalised b0 signal, when the
    response was not measured on the data), or ``Type: zsh`` with the zonal
    SH coefficients as ``Values``.
    """
    description = estimate.to_dict()
    s0 = 1.0 if estimate.S0 is None else float(estimate.S0)
    if estimate.zonal_coefs is not None:
        values = estimate.zonal_coefs.tolist()
    elif estimate.evals.ndim == 2:
        values = [[*row, s0] for row in estimate.evals.tolist()]
    else:
        values = [*estimate.evals.tolist(), s0]
    extra = {k: v for k, v in description.items() if k not in ("Type", "Values")}
    return {"Type": description["Type"], "Values": values, **extra}


def response_text(estimate: ResponseEstimate) -> str:
    """The text form of a response (see the module docstring)."""
    if estimate.zonal_coefs is not None:
        header = (
            f"# RUMBA-SD response ({estimate.method}): zonal SH coefficients l=0,2,..., "
            f"orthonormal basis, data units; S0 = {estimate.S0:.6g}\n"
        )
        return header + " ".join(f"{c:.8g}" for c in estimate.zonal_coefs) + "\n"
    s0 = 1.0 if estimate.S0 is None else estimate.S0
    header = f"# RUMBA-SD response ({estimate.method}): l1 l2 l3 (mm^2/s) S0"
    if estimate.shells is not None:
        header += "; one line per shell b = " + ", ".join(f"{b:g}" for b in estimate.shells)
    rows = np.atleast_2d(estimate.evals)
    return header + "\n" + "".join(" ".join(f"{v:.8g}" for v in (*r, s0)) + "\n" for r in rows)


def _recursive_sh_order(gtab, requested):
    """The requested SH order, or the highest even order <= 8 the directions support."""
    if requested is not None:
        return requested
    n_dirs = int((~gtab.b0s_mask).sum())
    default = _RECURSIVE["sh_order"].default
    return max(o for o in range(2, default + 1, 2) if n_sh_coefficients(o) <= n_dirs or o == 2)


def estimate_response_files(
    method,
    out_dir,
    *,
    dwi_file=None,
    bval_file=None,
    bvec_file=None,
    mask_file=None,
    in_file=None,
    wm_response=None,
    b0_threshold=DEFAULT_B0_THRESHOLD,
    fa_options=None,
    recursive_options=None,
    n_threads=None,
) -> tuple[str, str, ResponseEstimate]:
    """Estimate (or read) the response; write JSON and text; return (json, txt, estimate).

    Parameters
    ----------
    method : {'default', 'fa', 'recursive', 'file'}
    out_dir : str
    dwi_file, bval_file, bvec_file : str
        Series and checked gradients (voxel frame); needed by 'fa' and 'recursive'.
    mask_file : str, optional
        Brain mask on the DWI grid.
    in_file : str
        Response file of method 'file' (JSON or eigenvalue text); with
        ``bval_file``/``bvec_file`` it is checked against the data's shells
        (:func:`check_response_file`).
    wm_response : 3 floats, optional
        Eigenvalues (mm^2/s) replacing the default response (method 'default').
    fa_options, recursive_options : dict, optional
        Keyword arguments of :func:`fa_roi_response` / :func:`recursive_response`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown response method {method!r}; use one of {', '.join(METHODS)}")
    if wm_response is not None and method != "default":
        raise ValueError(f"wm_response sets the default response; method {method!r} ignores it")
    if method == "file":
        if in_file is None:
            raise ValueError("response method 'file' needs a response file (in_file)")
        if bval_file is None:
            estimate = load_response_estimate(in_file)
        else:  # the shells of the data it is applied to must be the response's
            gtab = load_gradient_table(bval_file, bvec_file, b0_threshold=b0_threshold)
            estimate = check_response_file(in_file, gtab.shells)
        stem = in_file
    elif method == "default":
        estimate = default_response()
        if wm_response is not None:
            evals = np.asarray(wm_response, dtype=float)
            estimate = ResponseEstimate("default", evals, ratio=float(evals[1] / evals[0]))
        stem = "response"
    else:
        if None in (dwi_file, bval_file, bvec_file):
            raise ValueError(f"response method {method!r} needs dwi_file, bval_file and bvec_file")
        estimate = _estimate_from_data(
            method,
            dwi_file,
            bval_file,
            bvec_file,
            mask_file,
            b0_threshold=b0_threshold,
            options=dict((fa_options if method == "fa" else recursive_options) or {}),
            n_threads=n_threads,
        )
        stem = dwi_file
    json_file = output_path(stem, "_response", out_dir, ext=".json")
    txt_file = output_path(stem, "_response", out_dir, ext=".txt")
    with open(json_file, "w") as handle:
        json.dump(estimate.to_dict(), handle, indent=2)
    with open(txt_file, "w") as handle:
        handle.write(response_text(estimate))
    return json_file, txt_file, estimate


def _estimate_from_data(method, dwi_file, bval_file, bvec_file, mask_file, **kwargs):
    dwi = load_dwi(dwi_file)
    gtab = load_gradient_table(bval_file, bvec_file, b0_threshold=kwargs["b0_threshold"])
    mask = None if mask_file is None else load_mask(mask_file, dwi, dwi_file)
    options = kwargs["options"]
    if method == "recursive":
        if gtab.n_shells != 1:
            raise InputDataError(
                dwi_file,
                f"the recursive response needs single-shell data, this series has shells "
                f"{[round(b) for b in gtab.shells]}: use the 'fa' response (one row per shell)",
            )
        options["sh_order"] = _recursive_sh_order(gtab, options.get("sh_order"))
    data = image_data(dwi, dwi_file)
    n_threads = kwargs["n_threads"]
    # the CSD runs n_threads threads of one BLAS thread each; the FA method is one BLAS call
    with limit_threads(1 if method == "recursive" else n_threads):
        try:
            if method == "fa":
                estimate = fa_roi_response(gtab, data, mask=mask, **options)
            else:
                estimate = recursive_response(
                    gtab, data, mask=mask, n_threads=n_threads, **options
                )
        except ValueError as exc:  # no usable voxel, no convergence: name the data
            raise InputDataError(dwi_file, f"{method} response: {exc}") from exc
    if estimate.converged is False:  # returned anyway, recorded in the sidecar
        logger.warning(
            "%s: the recursive response did not converge in %d iterations (last relative "
            "change %.2g); using the last estimate",
            dwi_file,
            estimate.n_iterations,
            estimate.max_change,
        )
    logger.info(
        "%s response from %d voxels: eigenvalues %s, l2/l1 %s",
        method,
        estimate.n_voxels,
        np.round(estimate.evals, 6).tolist(),
        np.round(estimate.ratio, 3).tolist(),
    )
    return estimate


class _EstimateResponseInputSpec(BaseInterfaceInputSpec):
    method = traits.Enum(*METHODS, mandatory=True, desc="default | fa | recursive | file")
    dwi_file = File(resolve=True, desc="4D series (methods fa, recursive)")
    bval_file = File(resolve=True, desc="checked b-values")
    bvec_file = File(resolve=True, desc="b-vectors in the voxel frame")
    mask_file = File(resolve=True, desc="brain mask on the DWI grid")
    in_file = File(resolve=True, desc="response JSON or eigenvalue text (method file)")
    wm_response = traits.Either(
        None,
        traits.Tuple(traits.Float, traits.Float, traits.Float),
        default=None,
        usedefault=True,
        desc="eigenvalues (mm^2/s) replacing the default response",
    )
    b0_threshold = traits.Float(DEFAULT_B0_THRESHOLD, usedefault=True, desc="s/mm^2")
    fa_threshold = traits.Float(_FA["fa_thr"].default, usedefault=True, desc="FA cut-off")
    roi_radii = traits.Int(_FA["roi_radii"].default, usedefault=True, desc="ROI half-size")
    roi_center = traits.Tuple(traits.Int, traits.Int, traits.Int, desc="ROI centre (voxels)")
    recursive_sh_order = traits.Int(desc="SH order of the recursive response (default: auto)")
    recursive_iterations = traits.Int(
        _RECURSIVE["n_iter"].default, usedefault=True, desc="recursive: maximum iterations"
    )
    peak_threshold = traits.Float(
        _RECURSIVE["peak_thr"].default, usedefault=True, desc="recursive: 2nd/1st peak cut-off"
    )
    require_convergence = traits.Bool(
        _RECURSIVE["require_convergence"].default,
        usedefault=True,
        desc="recursive: fail when the response has not converged",
    )
    n_threads = traits.Int(
        nohash=True,
        desc="threads of the estimate (the recursive response's CSD; each with one BLAS "
        "thread); default: every CPU the process may use",
    )


class _EstimateResponseOutputSpec(TraitedSpec):
    response_file = File(exists=True, desc="response as JSON (ResponseEstimate.to_dict)")
    response_txt = File(exists=True, desc="response as text")
    response = traits.Dict(desc="ResponseFunction sidecar entry")


class EstimateResponse(SimpleInterface):
    """White-matter response by ``method`` (see :func:`estimate_response_files`)."""

    input_spec = _EstimateResponseInputSpec
    output_spec = _EstimateResponseOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs

        def given(name):
            value = getattr(inputs, name)
            return value if isdefined(value) else None

        fa_options = {"fa_thr": inputs.fa_threshold, "roi_radii": inputs.roi_radii}
        if given("roi_center") is not None:
            fa_options["roi_center"] = list(inputs.roi_center)
        json_file, txt_file, estimate = estimate_response_files(
            inputs.method,
            runtime.cwd,
            **{name: given(name) for name in ("dwi_file", "bval_file", "bvec_file")},
            mask_file=given("mask_file"),
            in_file=given("in_file"),
            wm_response=inputs.wm_response,
            b0_threshold=inputs.b0_threshold,
            fa_options=fa_options,
            recursive_options={
                "sh_order": given("recursive_sh_order"),
                "n_iter": inputs.recursive_iterations,
                "peak_thr": inputs.peak_threshold,
                "require_convergence": inputs.require_convergence,
            },
            n_threads=given("n_threads"),
        )
        self._results.update(
            response_file=json_file, response_txt=txt_file, response=response_sidecar(estimate)
        )
        return runtime
