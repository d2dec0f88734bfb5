"""The reusable RUMBA-SD workflow of one DWI series.

``init_rumba_wf`` takes every model option as a keyword argument (no global
configuration) and returns a Nipype workflow with an ``inputnode`` (files) and
an ``outputnode`` (every product), ready to be embedded in a larger pipeline.
"""

from __future__ import annotations

import os

import numpy as np
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..core.gradients import DEFAULT_B0_THRESHOLD
from ..core.kernel import DEFAULT_CSF_RESPONSE
from ..core.memory import fod_node_bytes, process_bytes, series_node_bytes
from ..core.response import METHODS as RESPONSE_METHODS
from ..core.rumba import RECON_TYPES
from ..core.shm import (
    DEFAULT_SH_BASIS,
    DEFAULT_SH_ORDER,
    SH_BASES,
    max_sh_order,
    n_axes,
    n_sh_coefficients,
)
from ..core.sphere import DEFAULT_FOD_SCALE, DEFAULT_SPHERE, FOD_SCALES
from ..interfaces.gradients import CheckGradients
from ..interfaces.masking import BrainMask
from ..interfaces.peaks import PEAK_DEFAULTS, ExtractPeaks
from ..interfaces.response import EstimateResponse
from ..interfaces.rumba import (
    FIT_DEFAULTS,
    FIT_MODES,
    FitRumba,
    memory_model,
    resolve_sphere,
    values_itemsize,
)
from ..interfaces.shm import DEFAULT_SH_SMOOTHING, REFERENCES, SLAB_VOXELS, FodToSH
from ..interfaces.validation import BVEC_CONVENTIONS

INPUT_FIELDS = ("dwi_file", "bval_file", "bvec_file", "mask_file")
OUTPUT_FIELDS = (
    "fod_sh",
    "fod_amplitudes",
    "directions_file",
    "peaks",
    "peak_values",
    "gfa",
    "f_wm",
    "f_gm",
    "f_csf",
    "f_iso",
    "snr",
    "mask",
    "response",
    "response_txt",
    "metadata",
    "bval_file_out",
    "bvec_voxel_file",
)
#: Shape (x, y, z, volumes) assumed for memory estimates when no file is known:
#: a 2 mm whole-brain acquisition with 100 volumes.
REFERENCE_DWI_SHAPE = (110, 110, 70, 100)
#: Memory (GB) of the nodes that only read headers and small text files.
SMALL_NODE_MEM_GB = 0.2


def _series_facts(dwi_file, bval_file):
    """(shape, bytes per value, b-values or None) of a series, from its header only."""
    if dwi_file is None:
        return REFERENCE_DWI_SHAPE, 2, None
    import nibabel as nib

    image = nib.load(os.fspath(dwi_file))
    shape = tuple(image.shape) + (1,) * (4 - len(image.shape))
    bvals = None
    if bval_file is not None:
        try:
            bvals = np.loadtxt(os.fspath(bval_file), ndmin=1).ravel()
        except (OSError, ValueError):
            bvals = None
        if bvals is not None and len(bvals) != shape[3]:
            bvals = None
    return shape, values_itemsize(image), bvals


def estimate_mem_gb(
    dwi_file=None,
    *,
    bval_file=None,
    sphere=DEFAULT_SPHERE,
    fit="voxelwise",
    use_tv=False,
    sh_order=DEFAULT_SH_ORDER,
    npeaks=PEAK_DEFAULTS["npeaks"],
    block_voxels=None,
    n_voxels=None,
):
    """Memory (GB) to reserve for the nodes of :func:`init_rumba_wf`.

    Reads only the image header (or assumes :data:`REFERENCE_DWI_SHAPE`).  The
    fit counts ``n_voxels`` voxels (default: every voxel of the grid, an upper
    bound when the mask is not known yet); the nodes reading the series or the
    fODF always hold the whole grid.

    Parameters
    ----------
    dwi_file : str, optional
        The DWI series the workflow will process.
    bval_file : str, optional
        Its b-values (default: one b0 volume assumed).
    sphere : str
        Sphere of the fODF (its size M drives the fit's memory).
    fit : {'voxelwise', 'global'}
        The global fit (and ``use_tv``) holds every voxel at once.
    use_tv : bool
    sh_order, npeaks : int
        Size of the SH and peak outputs.
    block_voxels : int, optional
        Voxels the voxel-wise fit takes at once (default: all); e.g. 1024 for
        the least memory it can run in (see :func:`minimum_mem_gb`).
    n_voxels : int, optional
        Voxels of the brain mask, when known (default: every voxel).

    Returns
    -------
    dict
        ``'dwi'``: nodes reading the series (brain mask, response),
        :func:`rumba_bids.core.memory.series_node_bytes`;
        ``'fit'``: the RUMBA-SD fit of the ``n_voxels`` voxels,
        :func:`rumba_bids.core.memory.process_bytes`;
        ``'fod'``: SH fit and peak extraction, which read the fODF slab by slab,
        :func:`rumba_bids.core.memory.fod_node_bytes`.  All from the one byte
        model of :mod:`rumba_bids.core.memory`.
    """
    shape, itemsize, bvals = _series_facts(dwi_file, bval_file)
    grid_voxels = int(np.prod(shape[:3]))
    n_voxels = grid_voxels if n_voxels is None else min(int(n_voxels), grid_voxels)
    model = memory_model(shape[3], bvals=bvals, sphere=sphere, fit=fit, use_tv=use_tv)
    fit_bytes = process_bytes(
        model, shape, values_itemsize=itemsize, n_voxels=n_voxels, block_voxels=block_voxels
    )
    fod_bytes = fod_node_bytes(
        grid_voxels,
        n_directions=len(model.sphere),
        n_sh=n_sh_coefficients(sh_order),
        npeaks=npeaks,
        slab=SLAB_VOXELS,
    )
    gb = 1e-9
    return {
        "dwi": round(series_node_bytes(shape) * gb, 2),
        "fit": round(fit_bytes * gb + 0.005, 2),
        "fod": round(fod_bytes * gb, 2),
    }


def minimum_mem_gb(dwi_file=None, **options) -> dict:
    """The least memory (GB) each node of :func:`init_rumba_wf` can run in.

    As :func:`estimate_mem_gb`, except that the voxel-wise fit takes one chunk
    of voxels at a time (the global fit and the other nodes cannot be split).
    """
    options.pop("block_voxels", None)
    return estimate_mem_gb(dwi_file, block_voxels=1024, **options)


def cap_mem_gb(memory: dict, limit_gb) -> dict:
    """Each node's estimate, capped at ``limit_gb`` (None: unchanged)."""
    if limit_gb is None:
        return dict(memory)
    return {key: min(value, float(limit_gb)) for key, value in memory.items()}


def merge_rumba_metadata(
    fit_metadata, sh_encoding, peaks_encoding, mask_method, bvec_convention="fsl"
):
    """Sidecar metadata of the workflow: the fit's, plus every OrientationEncoding."""
    import copy

    metadata = copy.deepcopy(fit_metadata)
    metadata["Model"]["Parameters"]["BrainMask"] = mask_method
    metadata["BvecConvention"] = bvec_convention
    metadata["OrientationEncoding"]["sh"] = sh_encoding
    metadata["OrientationEncoding"].update(peaks_encoding)
    return metadata


def _check_options(options: dict) -> None:
    """Fail at build time, with the option's name, rather than inside a node."""
    checks = [
        (options["response"] in RESPONSE_METHODS, f"response must be one of {RESPONSE_METHODS}"),
        (
            (options["response"] == "file") == (options["response_file"] is not None),
            "response='file' needs response_file, and response_file needs response='file'",
        ),
        (options["fit"] in FIT_MODES, f"fit must be one of {FIT_MODES}"),
        (
            not options["use_tv"] or options["fit"] == "global",
            "use_tv=True needs fit='global' (total variation couples neighbouring voxels)",
        ),
        (options["recon_type"] in RECON_TYPES, f"recon_type must be one of {RECON_TYPES}"),
        (
            options["max_memory_gb"] is None or _positive(options["max_memory_gb"]),
            "max_memory_gb must be None or a positive number of GB",
        ),
        (options["sh_basis"] in SH_BASES, f"sh_basis must be one of {SH_BASES}"),
        (options["reference"] in REFERENCES, f"reference must be one of {REFERENCES}"),
        (options["fod_scale"] in FOD_SCALES, f"fod_scale must be one of {FOD_SCALES}"),
        (
            _positive(options["sh_smoothing"]) or options["sh_smoothing"] == 0,
            "sh_smoothing must be a number >= 0 (per steradian)",
        ),
        (
            options["bvec_convention"] in BVEC_CONVENTIONS,
            f"bvec_convention must be one of {BVEC_CONVENTIONS} ('fsl': FSL/BIDS .bvec; "
            "'ijk': vectors along the image axes, e.g. QSIPrep's)",
        ),
        (
            options["wm_response"] is None or np.shape(options["wm_response"]) == (3,),
            "wm_response must be None or 3 eigenvalues in mm^2/s, e.g. (1.7e-3, 0.2e-3, 0.2e-3)",
        ),
        (
            options["wm_response"] is None or options["response"] == "default",
            "wm_response sets the eigenvalues of response='default'; other methods ignore it",
        ),
        (
            options["gm_response"] in ("auto", None) or _positive(options["gm_response"]),
            "gm_response must be 'auto', None (off) or a diffusivity in mm^2/s",
        ),
        (
            options["csf_response"] is None or _positive(options["csf_response"]),
            "csf_response must be None (off) or a diffusivity in mm^2/s",
        ),
    ]
    for name in ("n_iter", "n_coils", "R", "npeaks", "omp_nthreads"):
        value = options[name]
        ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1
        checks.append((ok, f"{name} must be an integer >= 1, got {value!r}"))
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    check_sh_order(options["sh_order"], options["sphere"])


def check_sh_order(sh_order, sphere) -> None:
    """Refuse an SH order the fODF's sphere cannot determine (see :func:`max_sh_order`).

    The fODF is sampled on the ``sphere``'s vertices; its SH coefficients of
    order ``sh_order`` are determined by the samples only when there are at
    least as many distinct axes as coefficients.
    """
    vertices = resolve_sphere(sphere).vertices
    largest = max_sh_order(vertices)
    if not isinstance(sh_order, int | np.integer) or sh_order < 2 or sh_order % 2:
        raise ValueError(f"sh_order must be an even integer >= 2, got {sh_order!r}")
    if sh_order > largest:
        raise ValueError(
            f"sh_order {sh_order} needs {n_sh_coefficients(sh_order)} SH coefficients but "
            f"the sphere {sphere if isinstance(sphere, str) else ''} has "
            f"{n_axes(vertices)} distinct axes ({len(vertices)} vertices): use sh_order <= "
            f"{largest} or a larger sphere"
        )


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _node_memory(mem_gb, options) -> dict:
    if mem_gb is None:
        return estimate_mem_gb(
            sphere=options["sphere"],
            fit=options["fit"],
            use_tv=options["use_tv"],
            sh_order=options["sh_order"],
            npeaks=options["npeaks"],
        )
    if isinstance(mem_gb, dict):
        missing = {"dwi", "fit", "fod"} - set(mem_gb)
        if missing:
            raise ValueError(f"mem_gb needs the keys 'dwi', 'fit' and 'fod'; missing {missing}")
        return dict(mem_gb)
    return {"dwi": float(mem_gb), "fit": float(mem_gb), "fod": float(mem_gb)}


def init_rumba_wf(
    *,
    response="fa",
    response_file=None,
    response_options=None,
    fit="voxelwise",
    use_tv=FIT_DEFAULTS["use_tv"],
    n_iter=FIT_DEFAULTS["n_iter"],
    recon_type=FIT_DEFAULTS["recon_type"],
    n_coils=FIT_DEFAULTS["n_coils"],
    R=FIT_DEFAULTS["R"],
    wm_response=None,
    gm_response="auto",
    csf_response=DEFAULT_CSF_RESPONSE,
    sphere=DEFAULT_SPHERE,
    sh_order=DEFAULT_SH_ORDER,
    sh_basis=DEFAULT_SH_BASIS,
    sh_smoothing=DEFAULT_SH_SMOOTHING,
    npeaks=PEAK_DEFAULTS["npeaks"],
    relative_peak_threshold=PEAK_DEFAULTS["relative_peak_threshold"],
    min_separation_angle=PEAK_DEFAULTS["min_separation_angle"],
    refine_peaks=PEAK_DEFAULTS["refine"],
    reference="xyz",
    fod_scale=DEFAULT_FOD_SCALE,
    bvec_convention="fsl",
    b0_threshold=DEFAULT_B0_THRESHOLD,
    omp_nthreads=1,
    mem_gb=None,
    max_memory_gb=None,
    name="rumba_wf",
):
    """RUMBA-SD fODFs of one DWI series: gradients, mask, response, fit, SH, peaks.

    Workflow graph::

        inputnode -> check_gradients -> brain_mask -> estimate_response -> fit_rumba
                  fit_rumba -> fod_to_sh, extract_peaks -> merge_metadata -> outputnode

    Parameters
    ----------
    response : {'default', 'fa', 'recursive', 'file'}
        White-matter response: (1.7, 0.2, 0.2) x 1e-3 mm^2/s (or ``wm_response``),
        mean tensor of high-FA voxels, recursive calibration (Tax 2014;
        single-shell data), or read from ``response_file``.
    response_file : str, optional
        Response JSON (e.g. a group response) or text ``l1 l2 l3 [S0]``; only
        with ``response='file'``.
    response_options : dict, optional
        Further inputs of :class:`~rumba_bids.interfaces.response.EstimateResponse`
        (``fa_threshold``, ``roi_radii``, ``roi_center``, ``recursive_sh_order``, ...).
    fit : {'voxelwise', 'global'}
        Voxel-wise fit, or global fit of the 4D volume (needed for ``use_tv``).
    use_tv : bool
        Total-variation regularisation (global fit).
    n_iter : int
        RUMBA-SD iterations.
    recon_type : {'smf', 'sos'}
        Rician (spatial matched filter) or noncentral-chi (sum of squares) noise.
    n_coils : int
        Receiver coils of the ``'sos'`` noise model.
    R : int
        Acceleration factor (R > 1: voxel-wise TV strength).
    wm_response : 3 floats, optional
        Eigenvalues (mm^2/s) replacing the default response (``response='default'``).
    gm_response : float, None or 'auto'
        GM diffusivity (mm^2/s); None: no GM compartment; 'auto': on only for
        data with >= 3 non-zero shells (recorded in the metadata).
    csf_response : float or None
        CSF diffusivity (mm^2/s); None: no CSF compartment.
    sphere : str
        Sphere of the fODF: a name (``'repulsion724'``, ``'symmetric362'``, ...)
        or a text file of unit vectors in the voxel frame.
    sh_order : int
        Maximum even SH degree of ``fod_sh``.
    sh_basis : {'mrtrix3', 'descoteaux'}
    sh_smoothing : float
        Laplace-Beltrami regularisation of the SH fit, per steradian (the same
        filter for every sphere; 0: plain least squares).  The default removes
        the ringing that MRtrix3's ``fod2fixel`` would count as extra fixels
        (see :data:`rumba_bids.interfaces.shm.DEFAULT_SH_SMOOTHING`).
    npeaks, relative_peak_threshold, min_separation_angle
        Peak extraction (at most ``npeaks`` maxima above the given fraction of
        the largest, at least ``min_separation_angle`` degrees apart).
    refine_peaks : bool
        Peak directions between the sphere's vertices, with the fODF amplitude
        there (:func:`rumba_bids.core.peaks.extract_peaks`); False: vertices.
    reference : {'ijk', 'xyz'}
        Frame of the SH and peak directions: voxel axes (recorded as
        ``Reference: ijk``) or world axes of the affine (as MRtrix3 reads them).
        The amplitudes always use voxel-frame directions.
    fod_scale : {'density', 'weights'}
        Unit of every fODF output (SH, amplitudes, peak values): a density on
        the sphere (1/sr; its integral over the sphere is f_wm, so values do
        not depend on ``sphere`` and MRtrix3's default thresholds apply), or
        the raw per-direction weights (sum f_wm; DIPY's ``RumbaFit.odf``).
        Recorded as ``Model.Parameters.FODScale``.
    bvec_convention : {'fsl', 'ijk'}
        How ``bvec_file`` is read: ``'fsl'`` (FSL/BIDS: voxel axes with x negated
        when det(affine) > 0; raw BIDS, HCP-YA) or ``'ijk'`` (vectors along the
        image axes, never flipped; QSIPrep's ``.bvec``).  Recorded in the
        metadata as ``BvecConvention``.  Say it: a wrong one mirrors the fibres.
    b0_threshold : float
        Volumes with b <= this (s/mm^2) are b0 volumes.
    omp_nthreads : int
        Threads of the multi-threaded nodes (BLAS, median filter); their
        ``n_procs``, so MultiProc and cluster plugins reserve that many CPUs.
    mem_gb : dict, float or None
        Memory each node reserves: a dict ``{'dwi', 'fit', 'fod'}`` as returned
        by :func:`estimate_mem_gb` (call it with the DWI file when it is known
        at build time, as the BIDS-App does), a float for every data node, or
        None for the estimate of :data:`REFERENCE_DWI_SHAPE`.
    max_memory_gb : float, optional
        Memory the fit may use (GB); the voxel-wise fit then runs in blocks of
        voxels that fit (identical results), the global fit fails up front when
        it cannot.  Default: no limit.
    name : str

    Inputs
    ------
    dwi_file, bval_file, bvec_file
        4D DWI series and its gradient files (``.bvec`` in ``bvec_convention``).
    mask_file
        Optional brain mask on the DWI grid (default: ``median_otsu``).

    Outputs
    -------
    fod_sh
        fODF in SH (``sh_basis``, ``sh_order``), float32.
    fod_amplitudes, directions_file
        fODF sampled on the sphere (X, Y, Z, M) and the M directions (voxel frame).
    peaks, peak_values
        MRtrix3 ``sh2peaks`` layout (3 volumes per peak, NaN fill) and the
        peak amplitudes (0 fill).
    gfa, f_wm, f_gm, f_csf, f_iso, snr
        3D maps: fODF GFA, tissue fractions, S0/sigma.
    mask
        Brain mask (uint8).
    response, response_txt
        The response as JSON and as text.
    metadata
        Sidecar content: ``Model`` (``Description``, ``URL``, ``Parameters``
        with every fit setting, the GM/CSF choice and ``BrainMask``),
        ``BvecConvention``,
        ``ResponseFunction`` (``Type`` eigen/zsh, ``Values``) and
        ``OrientationEncoding`` per output kind (``sh``, ``amplitudes``,
        ``peaks``, ``peakvals``).
    bval_file_out, bvec_voxel_file
        Checked b-values and the b-vectors in the voxel frame.
    """
    options = dict(locals())
    _check_options(options)
    memory = _node_memory(mem_gb, options)
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(INPUT_FIELDS)), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(OUTPUT_FIELDS)), name="outputnode")

    check_gradients = pe.Node(
        CheckGradients(b0_threshold=b0_threshold, bvec_convention=bvec_convention),
        name="check_gradients",
        mem_gb=SMALL_NODE_MEM_GB,
    )
    brain_mask = pe.Node(
        BrainMask(b0_threshold=b0_threshold, n_threads=omp_nthreads),
        name="brain_mask",
        n_procs=omp_nthreads,
        mem_gb=memory["dwi"],
    )
    estimate_response = pe.Node(
        EstimateResponse(
            method=response,
            wm_response=None if wm_response is None else tuple(float(v) for v in wm_response),
            b0_threshold=b0_threshold,
            n_threads=omp_nthreads,
            **(response_options or {}),
        ),
        name="estimate_response",
        n_procs=omp_nthreads,
        mem_gb=memory["dwi"],
    )
    if response_file is not None:
        estimate_response.inputs.in_file = os.path.abspath(response_file)
    fit_rumba = pe.Node(
        FitRumba(
            fit=fit,
            use_tv=use_tv,
            n_iter=n_iter,
            recon_type=recon_type,
            n_coils=n_coils,
            R=R,
            gm_response=gm_response,
            csf_response=csf_response,
            sphere=sphere,
            fod_scale=fod_scale,
            b0_threshold=b0_threshold,
            n_threads=omp_nthreads,
            **({} if max_memory_gb is None else {"max_memory_gb": float(max_memory_gb)}),
        ),
        name="fit_rumba",
        n_procs=omp_nthreads,
        mem_gb=memory["fit"],
    )
    fod_to_sh = pe.Node(
        FodToSH(sh_order=sh_order, sh_basis=sh_basis, smoothing=sh_smoothing, reference=reference),
        name="fod_to_sh",
        mem_gb=memory["fod"],
    )
    extract_peaks = pe.Node(
        ExtractPeaks(
            npeaks=npeaks,
            relative_peak_threshold=relative_peak_threshold,
            min_separation_angle=min_separation_angle,
            refine=bool(refine_peaks),
            reference=reference,
        ),
        name="extract_peaks",
        mem_gb=memory["fod"],
    )
    merge_metadata = pe.Node(
        niu.Function(
            function=merge_rumba_metadata,
            input_names=[
                "fit_metadata",
                "sh_encoding",
                "peaks_encoding",
                "mask_method",
                "bvec_convention",
            ],
            output_names=["metadata"],
        ),
        name="merge_metadata",
        mem_gb=SMALL_NODE_MEM_GB,
    )
    merge_metadata.inputs.bvec_convention = bvec_convention

    # fmt: off
    workflow.connect([
        (inputnode, check_gradients, [("dwi_file", "dwi_file"),
                                      ("bval_file", "bval_file"),
                                      ("bvec_file", "bvec_file")]),
        (inputnode, brain_mask, [("dwi_file", "dwi_file"),
                                 ("mask_file", "in_mask")]),
        (check_gradients, brain_mask, [("bval_file", "bval_file")]),
        (inputnode, estimate_response, [("dwi_file", "dwi_file")]),
        (check_gradients, estimate_response, [("bval_file", "bval_file"),
                                              ("bvec_file", "bvec_file")]),
        (brain_mask, estimate_response, [("out_mask", "mask_file")]),
        (inputnode, fit_rumba, [("dwi_file", "dwi_file")]),
        (check_gradients, fit_rumba, [("bval_file", "bval_file"),
                                      ("bvec_file", "bvec_file")]),
        (brain_mask, fit_rumba, [("out_mask", "mask_file")]),
        (estimate_response, fit_rumba, [("response_file", "response_file")]),
        (fit_rumba, fod_to_sh, [("fod_amplitudes", "fod_amplitudes"),
                                ("directions_file", "directions_file")]),
        (fit_rumba, extract_peaks, [("fod_amplitudes", "fod_amplitudes"),
                                    ("directions_file", "directions_file")]),
        (brain_mask, extract_peaks, [("out_mask", "mask_file")]),
        (fit_rumba, merge_metadata, [("metadata", "fit_metadata")]),
        (fod_to_sh, merge_metadata, [("encoding", "sh_encoding")]),
        (extract_peaks, merge_metadata, [("encoding", "peaks_encoding")]),
        (brain_mask, merge_metadata, [("method", "mask_method")]),
        (check_gradients, outputnode, [("bval_file", "bval_file_out"),
                                       ("bvec_file", "bvec_voxel_file")]),
        (brain_mask, outputnode, [("out_mask", "mask")]),
        (estimate_response, outputnode, [("response_file", "response"),
                                         ("response_txt", "response_txt")]),
        (fit_rumba, outputnode, [("fod_amplitudes", "fod_amplitudes"),
                                 ("directions_file", "directions_file"),
                                 ("f_wm", "f_wm"),
                                 ("f_gm", "f_gm"),
                                 ("f_csf", "f_csf"),
                                 ("f_iso", "f_iso"),
                                 ("snr", "snr")]),
        (fod_to_sh, outputnode, [("out_file", "fod_sh")]),
        (extract_peaks, outputnode, [("peaks", "peaks"),
                                     ("peak_values", "peak_values"),
                                     ("gfa", "gfa")]),
        (merge_metadata, outputnode, [("metadata", "metadata")]),
    ])
    # fmt: on
    return workflow
