"""``rumba-bids``: the BIDS-App entry point.

``main()`` parses the command line, checks every selected run before building
anything, validates the dataset, builds one Nipype graph and runs it with the
chosen plugin, and returns the BIDS-Apps exit code.  Expected errors end in
one line ``rumba-bids: error: <file>: <problem>`` on stderr, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from .errors import (
    CannotCreateOutputError,
    DataError,
    ExitCode,
    InputMissingError,
    ProcessingError,
    RumbaBidsError,
    UsageError,
)
from .settings import GM_MIN_SHELLS

PROG = "rumba-bids"
#: Error type of the summary line when every run was refused, by the first refusal's code.
_ERROR_TYPES = {
    int(ExitCode.DATA): DataError,
    int(ExitCode.NO_INPUT): InputMissingError,
    int(ExitCode.USAGE): UsageError,
}
logger = logging.getLogger("rumba_bids.cli")
#: Thread-count variables read by BLAS / OpenMP libraries when they load.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def limit_blas_threads(n_threads: int) -> None:
    """Limit BLAS/OpenMP threads of this process and of the processes it starts.

    The environment variables take effect for libraries not loaded yet (and
    in Nipype's worker processes); :mod:`threadpoolctl`, when installed, also
    limits libraries already loaded.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n_threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n_threads)


def _ensure_writable_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CannotCreateOutputError(
            f"cannot create the {what} ({error.strerror or error})", path=path
        ) from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise CannotCreateOutputError(f"the {what} is not writable", path=path)


def _check_writable_target(path: Path, what: str) -> None:
    """Fail early (exit 73) when ``path`` could not be created; creates nothing."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CannotCreateOutputError(f"the {what} is inside a file ({existing})", path=path)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CannotCreateOutputError(f"the {what} is not writable", path=path)


def main(argv=None) -> int:
    """Run ``rumba-bids``; return the exit code (see ``rumba-bids -h``)."""
    from .parser import parse_settings

    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no version check over the network
    try:
        settings = parse_settings(argv)
    except SystemExit as done:  # -h / --version
        return int(done.code or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted by SIGINT", file=sys.stderr)
        return int(ExitCode.INTERRUPTED_SIGINT)
    except RumbaBidsError as error:
        suffix = f" (see {PROG} -h)" if isinstance(error, UsageError) else ""
        print(error.one_line(PROG) + suffix, file=sys.stderr)
        return int(error.exit_code)
    limit_blas_threads(settings.omp_nthreads or 1)

    from .logs import setup_logging
    from .resources import Interrupted, stop_on_signals, stop_workers

    console_filter = setup_logging(settings.verbosity)
    started = time.monotonic()
    try:
        with stop_on_signals():
            if settings.analysis_level == "group":
                from .group import run_group

                code = run_group(settings)
            else:
                code = run_participant(settings, console_filter=console_filter)
    except RumbaBidsError as error:
        print(error.one_line(PROG), file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt as interruption:
        signum = interruption.signum if isinstance(interruption, Interrupted) else 2
        name = interruption.name if isinstance(interruption, Interrupted) else "SIGINT"
        stop_workers()
        print(
            f"{PROG}: error: interrupted by {name}; finished steps are kept in "
            f"{settings.work_dir}; rerun the same command to resume",
            file=sys.stderr,
        )
        return 128 + signum
    elapsed = time.monotonic() - started
    if code == ExitCode.SUCCESS:
        logger.info("%s finished successfully in %.1f s", PROG, elapsed)
    return int(code)


def run_participant(settings, *, console_filter=None) -> int:
    """The participant level: find, check, validate, build, run.  Returns the exit code."""
    from ..inputs.detect import detect_layout
    from ..inputs.layouts import find_runs
    from .outputs import write_dataset_files
    from .parser import check_sh_order

    if settings.reports_only:
        return make_reports(settings, settings.participant_label)
    check_sh_order(settings.model)
    dataset = detect_layout(settings.bids_dir, settings.input_type)
    _check_writable_target(settings.output_dir, "output directory")
    _check_writable_target(settings.work_dir, "work directory")

    logger.info("%s %s: indexing %s", PROG, settings.version, dataset.root)
    logger.info("%s", dataset.summary())
    collected = find_runs(
        dataset,
        participant_label=settings.participant_label,
        session_label=settings.session_label,
        filters=dict(settings.bids_filters).get("dwi", {}),
    )
    if settings.mask_file is not None:
        collected = [run.with_mask(settings.mask_file) for run in collected]
    valid, rejected = preflight(collected, response_file=settings.model.response_file)
    valid, rejected = check_resources(settings, valid, rejected)
    settings = share_threads(settings, n_runs=len(valid))
    labels = [run.label for run in valid]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise UsageError(
            f"several DWI images would write the outputs of {', '.join(duplicated)} (they "
            "differ only in desc); choose one with --bids-filter-file, e.g. "
            '{"dwi": {"desc": "preproc"}}',
            path=settings.bids_dir,
        )

    if settings.skip_bids_validation:
        logger.info("BIDS validation skipped (--skip-bids-validation)")
    elif dataset.derivative:
        logger.info("input is a derivatives dataset: BIDS validation skipped")
    else:
        _validate(settings, collected, rejected)

    if not valid:
        first_error = rejected[0][1]
        if len(rejected) == 1:  # its line is already printed
            return int(first_error.exit_code)
        summary = _ERROR_TYPES.get(int(first_error.exit_code), ProcessingError)
        raise summary(
            f"none of the {len(rejected)} selected DWI runs can be processed (see above)",
            path=settings.bids_dir,
        )

    gm_by_run = _gm_by_run(settings, valid)
    try:  # options that cannot work together fail here, before anything is written
        workflow = build_workflow(settings, valid, gm_by_run)
    except ValueError as error:
        raise UsageError(str(error)) from error
    _ensure_writable_dir(settings.output_dir, "output directory")
    _ensure_writable_dir(settings.work_dir, "work directory")
    write_dataset_files(settings, dataset, valid, gm_by_run)

    if console_filter is not None:
        console_filter.run_labels.update({run.workflow_name: run.label for run in valid})
    failed = execute(workflow, settings, valid)

    make_reports(settings, sorted({run.subject for run in valid}), required=False)
    problems = len(rejected) + len(failed)
    if problems:
        for run, error in rejected:
            logger.error(
                "not processed: %s (invalid input, exit code %d)", run.label, error.exit_code
            )
        for label in failed:
            logger.error("failed: %s", label)
        print(
            f"{PROG}: error: {problems} of {len(collected)} run(s) failed or were invalid "
            f"({', '.join([r.label for r, _ in rejected] + failed)}); crash files under "
            f"{settings.output_dir}/sub-<label>/log/{settings.run_uuid}/",
            file=sys.stderr,
        )
        return int(ExitCode.PROCESSING_FAILED)
    logger.info("%d run(s) processed; outputs in %s", len(valid), settings.output_dir)
    return int(ExitCode.SUCCESS)


def make_reports(settings, subjects, *, required: bool = True) -> int:
    """Write ``sub-<label>.html`` (and its figures) for ``subjects`` (all when empty).

    With ``required`` (``--reports-only``) a subject without outputs is an
    error (exit 66); after processing, a report problem is logged and never
    changes the exit code of the processing.
    """
    from ..reports.html import generate_all_reports

    try:
        pages = generate_all_reports(settings.output_dir, subjects, bids_dir=settings.bids_dir)
    except ValueError as error:
        if required:
            raise InputMissingError(str(error)) from error
        logger.error("reports not written: %s", error)
        return int(ExitCode.PROCESSING_FAILED)
    except Exception as error:  # a broken report must not hide the processing result
        if required:
            raise ProcessingError(
                f"the reports failed: {type(error).__name__}: {error}"
            ) from error
        logger.exception("reports not written")
        return int(ExitCode.PROCESSING_FAILED)
    logger.debug("reports: %s", ", ".join(str(page) for page in pages))
    return int(ExitCode.SUCCESS)


def preflight(collected, *, response_file=None):
    """Check every run; return (valid [DwiRun with its facts], rejected [(DwiRun, error)]).

    With ``response_file`` (``--response file``), a run whose shells are not the
    response's is rejected too (exit 65, both shell sets named).
    """
    from ..inputs.check import check_run
    from ..interfaces.response import check_response_file

    valid, rejected = [], []
    for run in collected:
        try:
            checked = check_run(run)
            if response_file is not None:
                check_response_file(response_file, checked.shells, data=run.dwi_file)
        except RumbaBidsError as error:
            print(error.one_line(PROG), file=sys.stderr)
            rejected.append((run, error))
            continue
        logger.info("%s", checked.describe())
        valid.append(checked)
    return valid, rejected


def check_resources(settings, valid, rejected):
    """Move the runs that cannot fit in the memory limit from ``valid`` to ``rejected``."""
    from .resources import InsufficientMemoryError, check_memory, memory_limit_gb

    limit = memory_limit_gb(settings.mem_gb)
    if limit is None:
        return valid, rejected
    fitting = []
    for run in valid:
        try:
            minimum = check_memory(
                run, settings.model, limit_gb=limit, from_option=settings.mem_gb is not None
            )
        except (RumbaBidsError, InsufficientMemoryError) as error:
            print(error.one_line(PROG), file=sys.stderr)
            rejected = [*rejected, (run, error)]
            continue
        logger.debug("%s: least memory per step %s GB (limit %.2f GB)", run.label, minimum, limit)
        fitting.append(run)
    return fitting, rejected


def share_threads(settings, *, n_runs: int):
    """``settings`` with ``omp_nthreads`` decided: ``--nprocs`` divided among ``n_runs``.

    ``--omp-nthreads`` wins when given.  BLAS/OpenMP limits of this process
    (and of the processes it starts) follow the result.
    """
    import dataclasses

    from .machine import threads_per_run

    if settings.omp_nthreads is not None:
        return settings
    threads = threads_per_run(settings.nprocs, n_runs)
    logger.info(
        "%d CPU(s) for %d run(s): %d thread(s) per step (--omp-nthreads overrides)",
        settings.nprocs,
        n_runs,
        threads,
    )
    limit_blas_threads(threads)
    return dataclasses.replace(settings, omp_nthreads=threads)


def _validate(settings, collected, rejected) -> None:
    from .validation import find_validator, validate

    executable = find_validator()
    if executable is None:
        logger.warning(
            "BIDS validator not found (pip install bids-validator-deno); validation skipped"
        )
        return
    subjects = {run.subject for run in collected}
    stems = {_stem(run.dwi_file) for run, _ in rejected}
    warnings = validate(
        settings.bids_dir, selected_subjects=subjects, ignored_runs=stems, executable=executable
    )
    logger.info("BIDS validation passed (%d warning(s))", warnings)


def _stem(path) -> str:
    return Path(path).name.split(".")[0]


def _gm_by_run(settings, runs) -> dict:
    """Whether each run fits the GM compartment (logged when decided from its shells)."""
    gm_by_run = {}
    for run in runs:
        gm = settings.model.gm_enabled(run.n_shells)
        gm_by_run[run.label] = gm
        if settings.model.use_gm is None:
            logger.info(
                "%s: GM compartment %s (%d non-zero shell(s); on from %d)",
                run.label,
                "on" if gm else "off",
                run.n_shells,
                GM_MIN_SHELLS,
            )
    return gm_by_run


def rumba_options(model) -> dict:
    """Keyword arguments of ``init_rumba_wf`` from the model options."""
    if model.use_gm is None:
        gm = "auto"
    else:
        gm = model.gm_response if model.use_gm else None
    return {
        "response": model.response,
        "response_file": None if model.response_file is None else str(model.response_file),
        "fit": model.fit,
        "use_tv": model.use_tv,
        "n_iter": model.n_iter,
        "sphere": model.sphere,
        "recon_type": model.recon_type,
        "n_coils": model.n_coils,
        "R": model.acceleration_factor,
        "wm_response": tuple(model.wm_response) if model.response == "default" else None,
        "gm_response": gm,
        "csf_response": model.csf_response if model.use_csf else None,
        "sh_order": model.sh_order,
        "sh_basis": model.sh_basis,
        "npeaks": model.npeaks,
        "relative_peak_threshold": model.peak_threshold,
        "min_separation_angle": model.min_separation_angle,
        "refine_peaks": model.peak_refine,
        "fod_scale": model.fod_scale,
    }


def build_workflow(settings, dwi_runs, gm_by_run):
    """The Nipype graph of the participant level, configured for execution."""
    from nipype import config as nipype_config

    from ..workflows.bids import init_rumba_bids_wf
    from .resources import memory_limit_gb

    nipype_config.set("execution", "crashfile_format", "txt")
    nipype_config.set("execution", "stop_on_first_crash", str(settings.stop_on_first_crash))
    nipype_config.set("execution", "hash_method", "timestamp")
    nipype_config.set("execution", "create_report", "false")
    nipype_config.set("execution", "check_version", "false")
    if settings.resource_monitor:
        try:
            import psutil  # noqa: F401  (the monitor's requirement)
        except ImportError:
            logger.warning("--resource-monitor needs psutil (pip install psutil); not enabled")
        else:
            nipype_config.enable_resource_monitor()
    if settings.omp_nthreads is None:
        settings = share_threads(settings, n_runs=len(dwi_runs))
    workflow = init_rumba_bids_wf(
        runs=dwi_runs,
        output_dir=settings.output_dir,
        run_uuid=settings.run_uuid,
        rumba_options=rumba_options(settings.model),
        gm_by_run=gm_by_run,
        use_csf=settings.model.use_csf,
        write_amplitudes=settings.model.write_amplitudes,
        omp_nthreads=settings.omp_nthreads,
        mem_limit_gb=memory_limit_gb(settings.mem_gb),
        version=settings.version,
    )
    workflow.base_dir = str(settings.work_dir)
    workflow.config["execution"].update(
        {
            "crashfile_format": "txt",
            "stop_on_first_crash": settings.stop_on_first_crash,
            "crashdump_dir": str(settings.output_dir / "logs" / settings.run_uuid),
        }
    )
    return workflow


def execute(workflow, settings, dwi_runs) -> list[str]:
    """Run the graph; return the labels of the runs with a crashed step."""
    n_nodes = len(workflow._get_all_nodes())
    logger.info(
        "running %d run(s) (%d steps) with %s %s; work directory %s",
        len(dwi_runs),
        n_nodes,
        settings.plugin,
        dict(settings.plugin_args),
        settings.work_dir,
    )
    from .plugins import make_plugin
    from .resources import raise_if_interrupted, shut_down_pools, stop_if_interrupted

    plugin_args = {**settings.plugin_args, "status_callback": stop_if_interrupted}
    try:
        plugin = make_plugin(settings.plugin, plugin_args, workflow)
        try:
            workflow.run(plugin=plugin, plugin_args=plugin_args)
        finally:
            # interrupted, the workers may still run a step: stop_workers ends them first
            raise_if_interrupted()
            shut_down_pools()  # after a failed step, Nipype leaves its pool running
    except RuntimeError as error:
        raise_if_interrupted()
        if "Workflow did not execute cleanly" not in str(error) and not _crash_files(settings):
            raise ProcessingError(
                f"the Nipype plugin {settings.plugin} failed: {error}"
            ) from error
    except Exception as error:  # a plugin that cannot start (bad plugin_args, no scheduler)
        raise_if_interrupted()
        if settings.plugin == "MultiProc":
            raise
        raise ProcessingError(
            f"the Nipype plugin {settings.plugin} failed: {type(error).__name__}: {error}"
        ) from error
    raise_if_interrupted()  # a signal Nipype took for a failed step
    crashed_nodes = [_crashed_node(path) for path in _crash_files(settings)]
    failed = [
        run.label
        for run in dwi_runs
        if any(run.workflow_name in node.split(".") for node in crashed_nodes)
    ]
    if crashed_nodes and not failed:  # a crash outside the run workflows: all are suspect
        failed = [run.label for run in dwi_runs]
    return failed


def _crashed_node(crash_file: Path) -> str:
    """Full node name recorded on the first line of a text crash file."""
    try:
        first = crash_file.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return ""
    return first.split(":", 1)[1].strip() if first.startswith("Node:") else ""


def _crash_files(settings) -> list[Path]:
    """Crash files written by this invocation (its run_uuid)."""
    pattern = f"sub-*/log/{settings.run_uuid}/crash-*"
    return sorted(settings.output_dir.glob(pattern)) + sorted(
        (settings.output_dir / "logs" / settings.run_uuid).glob("crash-*")
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
