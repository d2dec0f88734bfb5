"""Command-line parser of ``rumba-bids`` and its translation into :class:`Settings`."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from .. import __version__
from ..core.defaults import FOD_SCALES
from .errors import (
    EXIT_CODE_HELP,
    InputMissingError,
    UnknownLevelError,
    UsageError,
)
from .settings import (
    DEFAULT_CSF_RESPONSE,
    DEFAULT_FOD_SCALE,
    DEFAULT_GM_RESPONSE,
    DEFAULT_MIN_SEPARATION_ANGLE,
    DEFAULT_N_ITER,
    DEFAULT_NPEAKS,
    DEFAULT_PEAK_THRESHOLD,
    DEFAULT_SH_BASIS,
    DEFAULT_SH_ORDER,
    DEFAULT_SPHERE,
    DEFAULT_WM_RESPONSE,
    GM_MIN_SHELLS,
    ModelOptions,
    Settings,
)

PROG = "rumba-bids"
ANALYSIS_LEVELS = ("participant", "group")
RESPONSES = ("default", "fa", "recursive", "file")
SPHERES = ("repulsion724", "symmetric362", "repulsion200", "repulsion100")
#: Input layouts (QSIRecon's spelling of --input-type).
INPUT_TYPES = ("bids", "qsiprep", "hcpya")
#: Largest plausible diffusivity in mm^2/s (free water at body temperature is 3e-3).
MAX_DIFFUSIVITY = 5e-3

DESCRIPTION = """\
Fibre orientation distributions from diffusion MRI with RUMBA-SD, for every DWI
run of a BIDS dataset, written as BIDS derivatives (BEP016 names).

  participant  fit every selected DWI run; outputs under output_dir/sub-<label>/
  group        average the participants' response functions into
               output_dir/model-rumba_desc-group_response.json, usable in a later
               participant run with --response file --response-file FILE"""

EPILOG = f"""\
examples:
  rumba-bids-demo demo                            # a small synthetic dataset
  rumba-bids demo demo/derivatives/rumba participant --nprocs 2
  rumba-bids /data/bids /data/out participant --participant-label 01 02 \\
      --response recursive --tv -w /scratch/work
  rumba-bids /data/bids /data/out group
  rumba-bids /data/bids /data/out participant --use-plugin slurm.yml

  slurm.yml:  plugin: SLURM
              plugin_args: {{sbatch_args: "--time=2:00:00 --mem=8G"}}

work directory: -w/--work-dir (default: <output_dir>/../work, or a directory under
  the system temp dir when that would fall inside bids_dir). Rerunning with the
  same work directory reuses every finished step.

{EXIT_CODE_HELP}"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows the metavar once after all the aliases of an option (shorter lines)."""

    def _format_action_invocation(self, action):
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        default = self._get_default_metavar_for_optional(action)
        return ", ".join(action.option_strings) + " " + self._format_args(action, default)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors raise :class:`UsageError` (exit 64, not 2)."""

    def error(self, message):
        raise UsageError(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_memory_gb(text: str) -> float:
    """``'16'``, ``'16G'``, ``'16GB'``, ``'16000M'``, ``'16000MB'`` -> GB.

    >>> parse_memory_gb("16000MB"), parse_memory_gb("8g")
    (16.0, 8.0)
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([gGmM][bB]?)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size in GB such as 16 or 16GB, got {text!r}")
    value = float(match.group(1))
    if match.group(2) and match.group(2)[0] in "mM":
        value /= 1000.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _label(prefix: str):
    def strip(text: str) -> str:
        label = text[len(prefix) :] if text.startswith(prefix) else text
        if not re.fullmatch(r"[a-zA-Z0-9]+", label):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a BIDS label (letters and digits, optional '{prefix}')"
            )
        return label

    return strip


def build_parser() -> argparse.ArgumentParser:
    """The ``rumba-bids`` argument parser."""
    parser = _ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("bids_dir", type=Path, help="the BIDS dataset (raw or preprocessed)")
    parser.add_argument(
        "output_dir",
        type=Path,
        help="where derivatives go (e.g. bids_dir/derivatives/rumba); never bids_dir itself",
    )
    parser.add_argument(
        "analysis_level", metavar="{participant,group}", help="processing stage to run"
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="more log output (-vv: every Nipype message)",
    )

    select = parser.add_argument_group("selecting data")
    select.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        type=_label("sub-"),
        metavar="LABEL",
        default=(),
        help="participants to process, with or without 'sub-' (default: all)",
    )
    select.add_argument(
        "--session-label",
        "--session_label",
        "--session-id",
        "--session_id",
        nargs="+",
        type=_label("ses-"),
        metavar="LABEL",
        default=(),
        help="sessions to process, with or without 'ses-' (default: all)",
    )
    select.add_argument(
        "--bids-filter-file",
        "--bids_filter_file",
        type=Path,
        metavar="FILE",
        help='JSON {"dwi": {entity: value}} narrowing the DWI query; null = entity absent, '
        '"*" = any value',
    )
    select.add_argument(
        "--skip-bids-validation",
        "--skip_bids_validation",
        action="store_true",
        help="do not run the BIDS validator (bids-validator-deno) on bids_dir",
    )
    select.add_argument(
        "--input-type",
        "--input_type",
        choices=INPUT_TYPES,
        default=None,
        help="layout of bids_dir: bids (raw BIDS or a BIDS derivative; FSL b-vectors), "
        "qsiprep (QSIPrep derivatives; image-axis b-vectors), hcpya (HCP-YA "
        "<subject>/T1w/Diffusion/ trees; FSL b-vectors); default: detected",
    )
    select.add_argument(
        "--mask-file",
        "--input-mask",
        type=Path,
        metavar="FILE",
        help="brain mask (NIfTI, same grid as the DWI) used instead of automatic masking",
    )

    perf = parser.add_argument_group("resources and execution")
    perf.add_argument(
        "--nprocs",
        "--nthreads",
        "--n-cpus",
        "--n_cpus",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPUs used in all (default: all this process may use: affinity mask and "
        "container CPU quota)",
    )
    perf.add_argument(
        "--omp-nthreads",
        "--omp_nthreads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="threads of one step, e.g. one fit (default: --nprocs divided among the runs "
        "that can run at once; a single run gets all; at most --nprocs)",
    )
    perf.add_argument(
        "--mem",
        "--mem-gb",
        "--mem_gb",
        type=parse_memory_gb,
        default=None,
        metavar="GB",
        help="memory limit, e.g. 16 or 16GB: steps are scheduled within it and the fit "
        "processes voxels in blocks that fit (default: 90%% of the memory this process may use, "
        "container limit included); runs that "
        "cannot fit are refused up front",
    )
    perf.add_argument(
        "-w",
        "--work-dir",
        "--work_dir",
        type=Path,
        metavar="DIR",
        help="Nipype working directory; a rerun with the same one reuses finished steps",
    )
    perf.add_argument(
        "--use-plugin",
        "--use_plugin",
        type=Path,
        metavar="FILE",
        help="YAML {plugin: NAME, plugin_args: {...}} choosing any Nipype execution plugin "
        "(MultiProc, Linear, SLURM, SGE, ...); default MultiProc",
    )
    perf.add_argument(
        "--stop-on-first-crash",
        action="store_true",
        help="stop everything at the first failing step (default: finish the other runs)",
    )
    perf.add_argument(
        "--resource-monitor",
        action="store_true",
        help="record CPU and memory use of every step (Nipype resource monitor)",
    )
    perf.add_argument(
        "--notrack", action="store_true", help="accepted for compatibility (no telemetry exists)"
    )
    perf.add_argument(
        "--reports-only",
        "--reports_only",
        action="store_true",
        help="only remake the sub-<label>.html reports and their figures from the outputs "
        "already in output_dir (nothing is processed)",
    )

    model = parser.add_argument_group("RUMBA-SD model")
    model.add_argument(
        "--response",
        choices=RESPONSES,
        default=None,
        help="WM response: default (the --wm-response eigenvalues), fa (tensor fit in "
        "high-FA voxels), recursive (Tax et al. 2014) or file (--response-file); default fa",
    )
    model.add_argument(
        "--response-file",
        type=Path,
        metavar="FILE",
        help="response JSON written by this app (per run or from the group level)",
    )
    model.add_argument(
        "--fit",
        choices=("voxelwise", "global"),
        default=None,
        help="voxelwise (default) or global (all voxels together, needed for --tv)",
    )
    model.add_argument(
        "--tv",
        action="store_true",
        help="total-variation spatial regularisation (implies --fit global)",
    )
    model.add_argument(
        "--n-iter",
        type=_positive_int,
        default=DEFAULT_N_ITER,
        metavar="N",
        help=f"RUMBA-SD iterations (default {DEFAULT_N_ITER})",
    )
    model.add_argument(
        "--sphere",
        choices=SPHERES,
        default=DEFAULT_SPHERE,
        help=f"deconvolution sphere (default {DEFAULT_SPHERE})",
    )
    model.add_argument(
        "--recon-type",
        choices=("smf", "sos"),
        default="smf",
        help="noise model: smf = Rician (SENSE / one coil, default), "
        "sos = noncentral chi (sum of squares of --n-coils)",
    )
    model.add_argument(
        "--n-coils", type=_positive_int, default=1, metavar="N", help="receiver coils (sos)"
    )
    model.add_argument(
        "--acceleration-factor",
        type=_positive_int,
        default=1,
        metavar="R",
        help="parallel-imaging acceleration factor R (default 1)",
    )
    model.add_argument(
        "--wm-response",
        type=_positive_float,
        nargs=3,
        metavar=("L1", "L2", "L3"),
        default=None,
        help="WM tensor eigenvalues in mm^2/s for --response default (default 1.7e-3 0.2e-3 "
        "0.2e-3)",
    )
    gm = model.add_mutually_exclusive_group()
    gm.add_argument(
        "--gm-response",
        type=_positive_float,
        metavar="D",
        default=None,
        help=f"GM diffusivity in mm^2/s; switches the GM compartment on (default "
        f"{DEFAULT_GM_RESPONSE:g}, on only for data with >= {GM_MIN_SHELLS} non-zero shells)",
    )
    gm.add_argument("--no-gm", action="store_true", help="no GM compartment")
    csf = model.add_mutually_exclusive_group()
    csf.add_argument(
        "--csf-response",
        type=_positive_float,
        metavar="D",
        default=None,
        help=f"CSF diffusivity in mm^2/s (default {DEFAULT_CSF_RESPONSE:g}; CSF is on by default)",
    )
    csf.add_argument("--no-csf", action="store_true", help="no CSF compartment")
    model.add_argument(
        "--sh-order",
        type=int,
        default=DEFAULT_SH_ORDER,
        metavar="L",
        help=f"even maximum SH degree of the fODF output (default {DEFAULT_SH_ORDER})",
    )
    model.add_argument(
        "--sh-basis",
        choices=("mrtrix3", "descoteaux"),
        default=DEFAULT_SH_BASIS,
        help=f"SH basis of the fODF output (default {DEFAULT_SH_BASIS})",
    )
    model.add_argument(
        "--npeaks",
        type=_positive_int,
        default=DEFAULT_NPEAKS,
        metavar="N",
        help=f"peaks kept per voxel (default {DEFAULT_NPEAKS})",
    )
    model.add_argument(
        "--peak-threshold",
        type=float,
        default=DEFAULT_PEAK_THRESHOLD,
        metavar="T",
        help=f"peaks below T x the largest one are dropped (default {DEFAULT_PEAK_THRESHOLD})",
    )
    model.add_argument(
        "--min-separation-angle",
        type=float,
        default=DEFAULT_MIN_SEPARATION_ANGLE,
        metavar="DEG",
        help=f"minimum angle between peaks (default {DEFAULT_MIN_SEPARATION_ANGLE:g})",
    )
    model.add_argument(
        "--no-peak-refine",
        action="store_true",
        help="peak directions at the sphere's vertices, as DIPY's peak_directions (default: "
        "refined between the vertices, with the fODF amplitude there)",
    )
    model.add_argument(
        "--write-amplitudes",
        action="store_true",
        help="also write the fODF sampled on the sphere (desc-amplitudes; large)",
    )
    model.add_argument(
        "--fod-scale",
        choices=FOD_SCALES,
        default=DEFAULT_FOD_SCALE,
        help="unit of the fODF outputs (SH, amplitudes, peaks): density (default; 1/sr, "
        "integral over the sphere = f_wm, independent of --sphere, what MRtrix3 expects) "
        "or weights (one weight per sphere direction summing to f_wm: DIPY's RumbaFit.odf)",
    )
    return parser


def _check_diffusivity(value: float, flag: str) -> float:
    if value > MAX_DIFFUSIVITY:
        raise UsageError(
            f"{flag} {value:g} is not a diffusivity in mm^2/s (values look like 1.7e-3); "
            "convert from um^2/ms by multiplying by 1e-3"
        )
    return float(value)


def check_sh_order(model) -> None:
    """Refuse a --sh-order the --sphere cannot determine (distinct axes >= SH coefficients).

    Called once BLAS threads are set (it loads numpy), before anything is written.
    """
    from ..workflows.rumba import check_sh_order as check

    try:
        check(model.sh_order, model.sphere)
    except ValueError as error:
        raise UsageError(
            "--sh-order / --sphere: " + str(error).replace("sh_order", "--sh-order")
        ) from error


def _model_options(args) -> ModelOptions:
    response = args.response
    if args.response_file is not None:
        if response not in (None, "file"):
            raise UsageError(f"--response-file needs --response file, not --response {response}")
        response = "file"
    if response == "file" and args.response_file is None:
        raise UsageError("--response file needs --response-file FILE")
    if args.wm_response is not None:
        if response not in (None, "default"):
            raise UsageError(f"--wm-response applies to --response default, not {response}")
        response = "default"
    response = response or "fa"
    wm_response = tuple(
        _check_diffusivity(v, "--wm-response") for v in (args.wm_response or DEFAULT_WM_RESPONSE)
    )
    if not wm_response[0] > max(wm_response[1:]):
        raise UsageError(
            "--wm-response needs the axial eigenvalue L1 first and larger than L2 and L3"
        )
    fit = args.fit
    if args.tv:
        if fit == "voxelwise":
            raise UsageError("--tv needs --fit global (total variation couples voxels)")
        fit = "global"
    fit = fit or "voxelwise"
    if args.n_coils > 1 and args.recon_type == "smf":
        raise UsageError("--n-coils > 1 needs --recon-type sos (smf means one effective coil)")
    if args.sh_order < 2 or args.sh_order % 2:
        raise UsageError(f"--sh-order must be even and at least 2, got {args.sh_order}")
    if not 0.0 <= args.peak_threshold <= 1.0:
        raise UsageError(f"--peak-threshold must be between 0 and 1, got {args.peak_threshold}")
    if not 0.0 <= args.min_separation_angle <= 90.0:
        raise UsageError(
            f"--min-separation-angle must be between 0 and 90 degrees, "
            f"got {args.min_separation_angle}"
        )
    use_gm = False if args.no_gm else (True if args.gm_response is not None else None)
    return ModelOptions(
        response=response,
        response_file=None if args.response_file is None else args.response_file.absolute(),
        fit=fit,
        use_tv=bool(args.tv),
        n_iter=args.n_iter,
        sphere=args.sphere,
        recon_type=args.recon_type,
        n_coils=args.n_coils,
        acceleration_factor=args.acceleration_factor,
        wm_response=wm_response,
        use_gm=use_gm,
        gm_response=_check_diffusivity(args.gm_response or DEFAULT_GM_RESPONSE, "--gm-response"),
        use_csf=not args.no_csf,
        csf_response=_check_diffusivity(
            args.csf_response or DEFAULT_CSF_RESPONSE, "--csf-response"
        ),
        sh_order=args.sh_order,
        sh_basis=args.sh_basis,
        npeaks=args.npeaks,
        peak_threshold=args.peak_threshold,
        min_separation_angle=args.min_separation_angle,
        peak_refine=not args.no_peak_refine,
        write_amplitudes=args.write_amplitudes,
        fod_scale=args.fod_scale,
    )


def _is_relative_to(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _input_file(path: Path, option: str) -> Path:
    """``path`` resolved, if it is a regular file (not a directory, device or FIFO)."""
    path = path.expanduser().resolve()
    if not path.exists():
        raise InputMissingError(f"{option} does not exist", path=path)
    if not path.is_file():
        raise UsageError(f"{option} is not a regular file", path=path)
    return path


#: Keyword arguments of ``BIDSLayout.get`` that are not entities: a filter file may
#: only narrow the query by entity values, never change how or where pybids looks.
_QUERY_KEYWORDS = frozenset(
    {
        "return_type",
        "target",
        "scope",
        "regex_search",
        "absolute_paths",
        "invalid_filters",
        "drop_invalid_filters",
    }
)
_FILTER_KEY = re.compile(r"[a-z][a-zA-Z]*")
#: Characters of entity values in filters: BIDS labels, extensions, "*" (any).
_FILTER_VALUE = re.compile(r"[a-zA-Z0-9.*+-]*")


def _check_filter_value(entity: str, value, path: Path) -> None:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                raise UsageError(f"--bids-filter-file: nested list for {entity!r}", path=path)
            _check_filter_value(entity, item, path)
        return
    if value is None or isinstance(value, bool | int | float):
        return
    if not isinstance(value, str):
        raise UsageError(
            f"--bids-filter-file: {entity!r} must be a string, number, null or a list of them",
            path=path,
        )
    if not _FILTER_VALUE.fullmatch(value) or ".." in value:
        raise UsageError(
            f"--bids-filter-file: {value!r} is not a BIDS entity value for {entity!r} "
            "(letters, digits, '.', '-', '+', '*'; no path separators or '..')",
            path=path,
        )


def _read_filters(path: Path) -> dict:
    path = _input_file(path, "--bids-filter-file")
    try:
        filters = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"--bids-filter-file is not valid JSON ({error})", path=path) from error
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise UsageError('--bids-filter-file must hold {"dwi": {entity: value, ...}}', path=path)
    unknown = sorted(set(filters) - {"dwi"})
    if unknown:
        raise UsageError(
            f'--bids-filter-file: unknown query {unknown}; rumba-bids only reads the "dwi" query',
            path=path,
        )
    for entity, value in filters.get("dwi", {}).items():
        if entity in _QUERY_KEYWORDS or not _FILTER_KEY.fullmatch(entity):
            raise UsageError(
                f"--bids-filter-file: {entity!r} is not a BIDS entity name", path=path
            )
        _check_filter_value(entity, value, path)
    return filters


def _read_plugin(path: Path, *, nprocs: int, mem_gb: float | None) -> tuple[str, dict]:
    import yaml

    path = _input_file(path, "--use-plugin file")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0]
        raise UsageError(f"--use-plugin is not valid YAML ({first})", path=path) from error
    if not isinstance(content, dict) or not isinstance(content.get("plugin"), str):
        raise UsageError("--use-plugin must hold {plugin: NAME, plugin_args: {...}}", path=path)
    plugin_args = content.get("plugin_args") or {}
    if not isinstance(plugin_args, dict):
        raise UsageError("plugin_args in --use-plugin must be a mapping", path=path)
    plugin = content["plugin"]
    from .plugins import check_plugin

    check_plugin(plugin, path)
    if plugin == "MultiProc":
        plugin_args.setdefault("n_procs", nprocs)
        if mem_gb is not None:
            plugin_args.setdefault("memory_gb", mem_gb)
    return plugin, plugin_args


def default_work_dir(output_dir: Path, bids_dir: Path) -> Path:
    """``<output_dir>/../work``, or a stable temp directory when that is inside ``bids_dir``."""
    candidate = output_dir.parent / "work"
    if not _is_relative_to(candidate, bids_dir):
        return candidate
    digest = hashlib.sha1(str(output_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"rumba_bids_work_{digest}"


def check_directories(bids_dir: Path, output_dir: Path, work_dir: Path | None) -> None:
    """Usage and input errors about the three directories (nothing is created)."""
    if not bids_dir.exists():
        raise InputMissingError("bids_dir does not exist", path=bids_dir)
    if not bids_dir.is_dir():
        raise InputMissingError("bids_dir is not a directory", path=bids_dir)
    if output_dir == bids_dir:
        raise UsageError(
            "output_dir must differ from bids_dir (use e.g. bids_dir/derivatives/rumba)",
            path=output_dir,
        )
    derivatives = bids_dir / "derivatives"
    if _is_relative_to(output_dir, bids_dir) and derivatives not in output_dir.parents:
        raise UsageError(
            "output_dir is inside bids_dir; only bids_dir/derivatives/<name> is allowed",
            path=output_dir,
        )
    if _is_relative_to(bids_dir, output_dir):
        raise UsageError("output_dir must not contain bids_dir", path=output_dir)
    if work_dir is not None:
        if _is_relative_to(work_dir, bids_dir):
            raise UsageError("the work directory must not be inside bids_dir", path=work_dir)
        if _is_relative_to(output_dir, work_dir):
            raise UsageError("the work directory must not contain output_dir", path=work_dir)


def parse_settings(argv=None) -> Settings:
    """Parse the command line into :class:`Settings`.

    Raises
    ------
    UsageError, UnknownLevelError, InputMissingError
        With the exit code of the problem (64, 17, 66).
    """
    from .machine import available_cpus
    from .resources import memory_limit_gb

    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.analysis_level
    if level not in ANALYSIS_LEVELS:
        raise UnknownLevelError(
            f"unknown analysis level {level!r}; choose one of {', '.join(ANALYSIS_LEVELS)}"
        )
    bids_dir = args.bids_dir.expanduser().resolve()
    output_dir = args.output_dir.expanduser().resolve()
    work_dir = None if args.work_dir is None else args.work_dir.expanduser().resolve()
    check_directories(bids_dir, output_dir, work_dir)
    if work_dir is None:
        work_dir = default_work_dir(output_dir, bids_dir)
    model = _model_options(args)
    if model.response_file is not None:
        _input_file(model.response_file, "--response-file")
    mask_file = None
    if args.mask_file is not None:
        mask_file = _input_file(args.mask_file, "--mask-file")
    filters = {} if args.bids_filter_file is None else _read_filters(args.bids_filter_file)

    nprocs = args.nprocs or available_cpus()
    omp_nthreads = args.omp_nthreads  # None: nprocs shared among the runs (run_participant)
    if omp_nthreads is not None and omp_nthreads > nprocs:
        raise UsageError(f"--omp-nthreads ({omp_nthreads}) cannot exceed --nprocs ({nprocs})")
    memory_gb = memory_limit_gb(args.mem)
    if args.use_plugin is not None:
        plugin, plugin_args = _read_plugin(args.use_plugin, nprocs=nprocs, mem_gb=memory_gb)
    else:
        plugin = "MultiProc"
        plugin_args = {"n_procs": nprocs, "raise_insufficient": False}
        if memory_gb is not None:
            plugin_args["memory_gb"] = memory_gb
    run_uuid = f"{datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4()}"
    return Settings(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=level,
        work_dir=work_dir,
        run_uuid=run_uuid,
        participant_label=tuple(dict.fromkeys(args.participant_label)),
        session_label=tuple(dict.fromkeys(args.session_label)),
        bids_filters=MappingProxyType(filters),
        skip_bids_validation=args.skip_bids_validation,
        input_type=args.input_type,
        mask_file=mask_file,
        nprocs=nprocs,
        omp_nthreads=omp_nthreads,
        mem_gb=args.mem,
        plugin=plugin,
        plugin_args=MappingProxyType(plugin_args),
        stop_on_first_crash=args.stop_on_first_crash,
        resource_monitor=args.resource_monitor,
        notrack=args.notrack,
        reports_only=args.reports_only,
        verbosity=args.verbosity,
        model=model,
        command_line=tuple(argv) if argv is not None else (),
        version=__version__,
    )
