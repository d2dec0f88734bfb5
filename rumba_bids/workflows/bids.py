"""The BIDS-App graph: one RUMBA-SD sub-workflow per DWI run, plus derivative sinks.

The runs are found and checked by :mod:`rumba_bids.inputs` before this builder
is called; here they are :class:`~rumba_bids.inputs.record.DwiRun` records (the
same records: files, entities, b-vector convention, input layout).  Each run becomes a
sub-workflow named from its BIDS entities (``sub_01_ses_1_run_2_wf``) that
wraps :func:`rumba_bids.workflows.rumba.init_rumba_wf` and saves its outputs
with :class:`~rumba_bids.interfaces.derivatives.DerivativesDataSink` under
BEP016 names, with one JSON sidecar per image.
"""

from __future__ import annotations

import inspect
import re
from copy import deepcopy
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..core.sphere import DEFAULT_FOD_SCALE, DEFAULT_SPHERE
from ..inputs.record import DwiRun
from ..interfaces.derivatives import DerivativesBundleSink, bids_path
from ..interfaces.rumba import fod_units

__all__ = ["DwiRun", "init_dwi_run_wf", "init_rumba_bids_wf", "workflow_name"]

#: Outputs in the unit of the fODF (``fod_scale``), stated in their sidecar's ``Units``.
FOD_UNIT_OUTPUTS = ("fod_sh", "fod_amplitudes", "peaks", "peak_values")
#: (outputnode field, param entity, desc entity, OrientationEncoding kind or None).
MAP_OUTPUTS = (
    ("fod_sh", "fod", None, "sh"),
    ("peaks", "peaks", None, "peaks"),
    ("peak_values", "peakvals", None, "peakvals"),
    ("gfa", "gfa", None, None),
    ("f_wm", "fwm", None, None),
    ("f_gm", "fgm", None, None),
    ("f_csf", "fcsf", None, None),
    ("f_iso", "fiso", None, None),
    ("snr", "snr", None, None),
)
AMPLITUDES_OUTPUT = ("fod_amplitudes", "fod", "amplitudes", "amplitudes")
DESCRIPTIONS = {
    "fod": "Fibre orientation distribution (RUMBA-SD), real spherical harmonics",
    "peaks": "fODF peak directions scaled by their amplitude, 3 volumes per peak",
    "peakvals": "fODF peak amplitudes",
    "gfa": "Generalised fractional anisotropy of the fODF",
    "fwm": "White-matter signal fraction (integral of the fODF)",
    "fgm": "Grey-matter (isotropic, slow) signal fraction",
    "fcsf": "CSF (isotropic, free water) signal fraction",
    "fiso": "Total isotropic signal fraction (GM + CSF)",
    "snr": "Signal-to-noise ratio S0/sigma from the RUMBA-SD noise estimate",
}


def workflow_name(version: str) -> str:
    """Top-level name carrying the version, so caches of two versions never mix."""
    return "rumba_bids_" + re.sub(r"[^0-9a-zA-Z]", "_", version) + "_wf"


def _call_with_accepted(function, options: dict):
    """Call ``function`` with the subset of ``options`` its signature accepts."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return function(**options)
    return function(**{key: value for key, value in options.items() if key in parameters})


def _orientation_encoding(kind, *, sh_order, sh_basis):
    if kind == "sh":
        return {
            "Type": "sh",
            "SphericalHarmonicBasis": sh_basis,
            "SphericalHarmonicDegree": sh_order,
            "EncodingAxis": 3,
            "Reference": "xyz",
        }
    if kind == "peaks":
        return {"Type": "3vector", "EncodingAxis": 3, "Reference": "xyz", "FillValue": "NaN"}
    if kind == "peakvals":
        return {"Type": "scalar", "EncodingAxis": 3, "FillValue": "NaN"}
    return None


def init_dwi_run_wf(
    *,
    run: DwiRun,
    output_dir,
    rumba_options: dict,
    write_amplitudes: bool = False,
    write_gm: bool = True,
    write_csf: bool = True,
    omp_nthreads: int = 1,
    mem_limit_gb: float | None = None,
    name: str | None = None,
):
    """RUMBA-SD of one DWI run and the sinks writing its derivatives.

    Parameters
    ----------
    run : DwiRun
    output_dir : path
        Root of the derivatives dataset.
    rumba_options : dict
        Keyword arguments of :func:`rumba_bids.workflows.rumba.init_rumba_wf`
        (those it does not accept are ignored).
    write_amplitudes : bool
        Also save the fODF sampled on the sphere (``desc-amplitudes``).
    write_gm, write_csf : bool
        Save the GM / CSF fraction maps (only when the compartment was fitted).
    omp_nthreads : int
        Threads of the multi-threaded steps.
    mem_limit_gb : float, optional
        Memory one step may use (GB): each node reserves its estimate capped at
        this, and the fit runs in blocks of voxels that fit (default: no limit).
    name : str, optional
        Default :attr:`DwiRun.workflow_name`.

    Inputs
    ------
    None: the run's files are set when the graph is built.

    Outputs
    -------
    outputnode.out_files : list of str
        Every derivative written.
    """
    from .rumba import cap_mem_gb, estimate_mem_gb, init_rumba_wf

    output_dir = str(output_dir)
    workflow = pe.Workflow(name=name or run.workflow_name)
    memory = _call_with_accepted(
        estimate_mem_gb, {"dwi_file": run.dwi_file, "bval_file": run.bval_file, **rumba_options}
    )
    memory = cap_mem_gb(memory, mem_limit_gb)
    options = {
        **rumba_options,
        "omp_nthreads": omp_nthreads,
        "mem_gb": memory,
        "bvec_convention": run.bvec_convention,
    }
    if mem_limit_gb is not None:
        options["max_memory_gb"] = memory["fit"]
    rumba_wf = _call_with_accepted(init_rumba_wf, options)
    rumba_wf.inputs.inputnode.dwi_file = run.dwi_file
    rumba_wf.inputs.inputnode.bval_file = run.bval_file
    rumba_wf.inputs.inputnode.bvec_file = run.bvec_file
    if run.mask_file:
        rumba_wf.inputs.inputnode.mask_file = run.mask_file

    mask_name = bids_path(run.name_source, desc="brain", suffix="mask", extension=".nii.gz")
    map_sources = [*run.sources, f"bids::{mask_name}"]
    provenance = {"InputLayout": run.layout, "BvecConvention": run.bvec_convention}
    sh_order = rumba_options.get("sh_order", 8)
    sh_basis = rumba_options.get("sh_basis", "mrtrix3")

    maps = list(MAP_OUTPUTS) + ([AMPLITUDES_OUTPUT] if write_amplitudes else [])
    skipped = ({"f_gm"} if not write_gm else set()) | ({"f_csf"} if not write_csf else set())
    fields, specs = [], []
    for field_name, param, desc, kind in maps:
        if field_name in skipped:
            continue
        extra = {
            "Description": DESCRIPTIONS[param]
            + (" sampled on the sphere" if desc == "amplitudes" else ""),
            "SkullStripped": True,
            "Sources": map_sources,
            **provenance,
        }
        fallback = _orientation_encoding(kind, sh_order=sh_order, sh_basis=sh_basis)
        if fallback is not None:
            extra["OrientationEncoding"] = fallback
        if field_name in FOD_UNIT_OUTPUTS:
            extra["Units"] = fod_units(
                rumba_options.get("fod_scale", DEFAULT_FOD_SCALE),
                sphere=rumba_options.get("sphere", DEFAULT_SPHERE),
            )
        spec = {"model": "rumba", "param": param, "suffix": "dwimap", "extra_meta": extra}
        if desc:
            spec["desc"] = desc
        if kind:
            spec["encoding"] = kind
        fields.append(field_name)
        specs.append(spec)
    fields.append("mask")
    specs.append(
        {
            "desc": "brain",
            "suffix": "mask",
            "data_dtype": "uint8",
            "shared_meta": False,
            "extra_meta": {
                "Type": "Brain",
                "Description": "Brain mask the fit was restricted to"
                + (" (given with the input)" if run.mask_file else " (median Otsu)"),
                "Sources": list(run.sources),
                **provenance,
            },
        }
    )
    fields.append("response")
    specs.append({"model": "rumba", "suffix": "response", "extension": ".json"})

    ds_derivatives = pe.Node(
        DerivativesBundleSink(
            len(specs), base_directory=output_dir, source_file=run.name_source, outputs=specs
        ),
        name="ds_derivatives",
        run_without_submitting=True,
    )
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_files"]), name="outputnode")
    workflow.connect(
        [
            (
                rumba_wf,
                ds_derivatives,
                [("outputnode.metadata", "meta_dict")]
                + [(f"outputnode.{name}", f"in{i + 1}") for i, name in enumerate(fields)],
            ),
            (ds_derivatives, outputnode, [("out_files", "out_files")]),
        ]
    )
    return workflow


def init_rumba_bids_wf(
    *,
    runs,
    output_dir,
    run_uuid: str,
    rumba_options: dict,
    gm_by_run: dict | None = None,
    use_csf: bool = True,
    write_amplitudes: bool = False,
    omp_nthreads: int = 1,
    mem_limit_gb: float | None = None,
    version: str = "0",
    name: str | None = None,
):
    """The whole BIDS-App graph: one :func:`init_dwi_run_wf` per run.

    Parameters
    ----------
    runs : list of DwiRun
    output_dir : path
    run_uuid : str
        Crash files of subject ``l`` go to ``output_dir/sub-l/log/<run_uuid>/``.
    rumba_options : dict
        Passed to every run (see :func:`init_dwi_run_wf`).
    gm_by_run : dict, optional
        ``{run.label: bool}``: whether the GM compartment is fitted (its map is written).
    use_csf : bool
        Whether the CSF compartment is fitted (its map is written).
    write_amplitudes : bool
    omp_nthreads : int
    mem_limit_gb : float, optional
        Memory one step may use (GB), see :func:`init_dwi_run_wf`.
    version : str
        Goes into the default name.
    name : str, optional
        Default :func:`workflow_name`.

    Returns
    -------
    nipype.pipeline.engine.Workflow
    """
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(f"two runs would write the same outputs: {duplicated}")
    workflow = pe.Workflow(name=name or workflow_name(version))
    gm_by_run = gm_by_run or {}
    for run in runs:
        run_wf = init_dwi_run_wf(
            run=run,
            output_dir=output_dir,
            rumba_options=rumba_options,
            write_amplitudes=write_amplitudes,
            write_gm=gm_by_run.get(run.label, True),
            write_csf=use_csf,
            omp_nthreads=omp_nthreads,
            mem_limit_gb=mem_limit_gb,
        )
        crash_dir = Path(output_dir) / f"sub-{run.subject}" / "log" / run_uuid
        run_wf.config["execution"] = {"crashdump_dir": str(crash_dir)}
        for node in run_wf._get_all_nodes():
            node.config = deepcopy(run_wf.config)
        workflow.add_nodes([run_wf])
    return workflow
