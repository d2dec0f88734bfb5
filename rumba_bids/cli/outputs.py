"""Dataset-level files of the output directory, shared by concurrent invocations.

Several ``rumba-bids`` processes (e.g. one per participant on a cluster) may
write into one output directory at once.  Each derivative is written to a
temporary name and renamed into place (never visible half-written); the
dataset-level files (``dataset_description.json``, ``logs/CITATION.md`` and
``.bib``, and the record of processed runs they are made from,
``logs/processed_runs.json``) are read, merged and rewritten while holding an
exclusive lock on ``<output_dir>/.rumba-bids.lock`` (``fcntl.flock``), so the
citation describes the runs of every invocation, not only the last one's.

A process killed outright (SIGKILL, power loss of a node) may leave hidden
temporary files (``.<name>.<tag>.tmp...``); the next run over the same
participants removes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("rumba_bids.cli")

LOCK_NAME = ".rumba-bids.lock"
RUNS_RECORD = Path("logs") / "processed_runs.json"
#: Temporary files of atomic writes: ``.<name>.<8 hex or pid>.tmp[<suffixes>]``.
TEMPORARY = re.compile(r"^\..+\.(?:[0-9a-f]{8}|\d+)\.tmp(?:\.[A-Za-z0-9.]+)?$")


@contextmanager
def output_lock(output_dir: Path):
    """Hold an exclusive lock on ``output_dir/.rumba-bids.lock`` (waits for other holders)."""
    import fcntl

    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / LOCK_NAME, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_stale_temporaries(output_dir: Path, subjects) -> list[Path]:
    """Delete temporary files left by killed runs of ``subjects``; return them.

    Looks under ``sub-<label>/`` and, for the dataset-level files, in the
    output root and ``logs/``.  Call it holding :func:`output_lock`; it never
    touches another participant's folder, where a concurrent process may be
    writing.
    """
    candidates = []
    for subject in subjects:
        folder = output_dir / f"sub-{subject}"
        if folder.is_dir():
            candidates.extend(folder.rglob(".*.tmp*"))
        candidates.extend(output_dir.glob(f".sub-{subject}.html.*.tmp*"))
    for name in ("dataset_description.json", "model-rumba_desc-group_response.json"):
        candidates.extend(output_dir.glob(f".{name}.*.tmp*"))
    if (output_dir / "logs").is_dir():
        candidates.extend((output_dir / "logs").glob(".*.tmp*"))
    removed = []
    for path in candidates:
        if TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info(
            "removed %d temporary file(s) left by an interrupted run (e.g. %s)",
            len(removed),
            removed[0].relative_to(output_dir),
        )
    return removed


def options_signature(settings, *, derivative: bool) -> str:
    """Hash of everything the methods text depends on, apart from the runs."""
    from .. import __version__

    model = settings.to_dict()["model"]
    content = {
        "version": __version__,
        "model": model,
        "user_mask": settings.mask_file is not None,
        "derivative_input": derivative,
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _read_record(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    runs = content.get("Runs") if isinstance(content, dict) else None
    return runs if isinstance(runs, dict) else {}


def write_dataset_files(settings, dataset, dwi_runs, gm_by_run) -> None:
    """``dataset_description.json``, ``logs/CITATION.*``, the settings of this invocation.

    Holds :func:`output_lock` while merging this invocation's runs into
    ``logs/processed_runs.json`` and rewriting the citation from every run
    processed with the same options (runs whose ``sub-<label>`` folder was
    deleted are dropped).  ``dataset`` (:class:`rumba_bids.inputs.detect.InputDataset`)
    gives ``SourceDatasets`` and ``DatasetLinks``; the pipeline that made a
    preprocessed input is listed in ``GeneratedBy`` after rumba-bids.
    """
    from .. import __version__
    from ..interfaces.derivatives import atomic_write_json, atomic_write_text
    from .boilerplate import citation_files

    output_dir = settings.output_dir
    description = dataset.description
    derivative = dataset.derivative
    generated_by = {
        "Name": "rumba-bids",
        "Version": __version__,
        "CodeURL": "https://github.com/rumba-bids/rumba-bids",
        "Description": "RUMBA-SD fibre orientation distributions",
    }
    if Path("/.dockerenv").exists():
        generated_by["Container"] = {"Type": "docker"}
    elif os.environ.get("SINGULARITY_NAME") or os.environ.get("APPTAINER_NAME"):
        generated_by["Container"] = {"Type": "apptainer"}
    source = {"URL": Path(dataset.root).as_uri()}
    if description.get("DatasetDOI"):
        source["DOI"] = description["DatasetDOI"]
    dataset_description = {
        "Name": "rumba-bids: RUMBA-SD fibre orientation distributions",
        "BIDSVersion": description.get("BIDSVersion", "1.10.0"),
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by, *dataset.generated_by()],
        "SourceDatasets": [source],
        "DatasetLinks": {dataset.dataset_name: Path(dataset.root).as_uri()},
        "HowToAcknowledge": "Cite the references in logs/CITATION.md",
    }
    subjects = sorted({run.subject for run in dwi_runs})
    signature = options_signature(settings, derivative=derivative)
    with output_lock(output_dir):
        remove_stale_temporaries(output_dir, subjects)
        for subject in subjects:
            log_dir = output_dir / f"sub-{subject}" / "log" / settings.run_uuid
            log_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(log_dir / "rumba_bids_settings.json", settings.to_json())
        atomic_write_json(output_dir / "dataset_description.json", dataset_description)
        record = {
            label: entry
            for label, entry in _read_record(output_dir / RUNS_RECORD).items()
            if isinstance(entry, dict)
            and (output_dir / f"sub-{entry.get('Subject', '')}").is_dir()
        }
        for run in dwi_runs:
            record[run.label] = {
                "Subject": run.subject,
                "GMCompartment": bool(gm_by_run.get(run.label)),
                "InputLayout": run.layout,
                "BvecConvention": run.bvec_convention,
                "Options": signature,
                "RunUUID": settings.run_uuid,
            }
        described = {label: e for label, e in record.items() if e.get("Options") == signature}
        others = sorted(set(record) - set(described))
        if others:
            logger.warning(
                "%d run(s) in %s were processed with other options or versions (%s); "
                "logs/CITATION.md describes the %d run(s) processed like this one",
                len(others),
                output_dir,
                ", ".join(others[:5]) + (", ..." if len(others) > 5 else ""),
                len(described),
            )
        markdown, bib = citation_files(
            version=__version__,
            model=settings.model,
            n_runs=len(described),
            n_participants=len({entry["Subject"] for entry in described.values()}),
            gm_runs=sum(bool(entry.get("GMCompartment")) for entry in described.values()),
            derivative_input=derivative,
            user_mask=settings.mask_file is not None,
            input_layouts=tuple(
                sorted({str(entry.get("InputLayout", "bids")) for entry in described.values()})
            ),
            response_file_name=None
            if settings.model.response_file is None
            else settings.model.response_file.name,
        )
        atomic_write_text(output_dir / "logs" / "CITATION.md", markdown)
        atomic_write_text(output_dir / "logs" / "CITATION.bib", bib)
        atomic_write_json(
            output_dir / RUNS_RECORD,
            {
                "Description": "DWI runs processed into this dataset; logs/CITATION.md "
                "describes those with the latest invocation's options",
                "Runs": dict(sorted(record.items())),
            },
        )
