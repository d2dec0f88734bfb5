"""BIDS layout: DWI runs of a raw dataset (or a BIDS derivative), found with pybids.

The ``.bval``/``.bvec`` of a run are the nearest ones by BIDS inheritance, read
with the FSL convention BIDS prescribes; a derivative's ``desc-brain_mask`` on
the DWI grid is used when there is exactly one.  The query runs at build time,
never inside a node.  :mod:`rumba_bids.inputs.qsiprep` reuses the query.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..interfaces.errors import DataError
from .errors import NoRunsSelectedError, UsageError
from .record import RUN_ENTITIES, DwiRun

logger = logging.getLogger("rumba_bids.inputs")

IMAGE_EXTENSIONS = [".nii", ".nii.gz"]
#: Entities of the run record (long names), in BIDS order.
ENTITY_NAMES = tuple(name for name, _ in RUN_ENTITIES)


def load_layout(root: Path, *, derivative: bool):
    """A pybids layout of ``root`` (in memory; nothing is written there)."""
    from bids import BIDSLayout

    config = ["bids", "derivatives"] if derivative else ["bids"]
    try:
        return BIDSLayout(str(root), validate=False, is_derivative=derivative, config=config)
    except Exception as error:  # pybids raises many kinds on malformed datasets
        raise DataError(f"pybids cannot index the dataset ({error})", path=root) from error


def _query_value(value):
    from bids.layout import Query

    if value is None:
        return Query.NONE
    if value == "*":
        return Query.ANY
    return value


def dwi_query(
    layout, *, participant_label=(), session_label=(), filters=None, base=None, what="DWI run"
) -> tuple[dict, list]:
    """Apply labels and filters; return (query, files).

    Parameters
    ----------
    layout : bids.BIDSLayout
    participant_label, session_label : sequence of str
        Without ``sub-`` / ``ses-``.
    filters : dict, optional
        The ``dwi`` query of ``--bids-filter-file``.
    base : dict, optional
        Entities every file must have (e.g. ``{"desc": "preproc"}`` for QSIPrep).
    what : str
        Named in the "nothing selected" message.

    Raises
    ------
    UsageError
        Unknown participant or session label, or unknown entity in the filters (64).
    NoRunsSelectedError
        Nothing matches (18).
    """
    subjects = layout.get_subjects(datatype="dwi")
    all_subjects = layout.get_subjects()
    unknown = [label for label in participant_label if label not in all_subjects]
    if unknown:
        raise UsageError(
            f"unknown participant label(s) {', '.join(unknown)}; the dataset has "
            f"{', '.join(all_subjects) or 'no participants'}",
            path=layout.root,
        )
    query = {"datatype": "dwi", "suffix": "dwi", "extension": IMAGE_EXTENSIONS, **(base or {})}
    if participant_label:
        query["subject"] = list(participant_label)
    if session_label:
        sessions = layout.get_sessions(subject=list(participant_label) or all_subjects)
        unknown = [label for label in session_label if label not in sessions]
        if unknown:
            raise UsageError(
                f"unknown session label(s) {', '.join(unknown)}; the selected participants "
                f"have {', '.join(sessions) or 'no sessions'}",
                path=layout.root,
            )
        query["session"] = list(session_label)
    for entity, value in (filters or {}).items():
        if entity in ("subject", "session") and entity in query:
            # labels and filters must both hold
            wanted = set(query[entity])
            allowed = set(value if isinstance(value, list) else [value])
            query[entity] = sorted(wanted & allowed)
            continue
        query[entity] = _query_value(value)
    try:
        files = layout.get(invalid_filters="error", **query)
    except ValueError as error:
        raise UsageError(f"--bids-filter-file: {error}") from error
    if not files:
        described = ", ".join(
            f"{key}={value}"
            for key, value in query.items()
            if key not in ("datatype", "suffix", "extension")
        )
        detail = f" matching {described}" if described else ""
        raise NoRunsSelectedError(
            f"no {what}{detail} (participants with DWI: {', '.join(subjects) or 'none'})",
            path=layout.root,
        )
    return query, sorted(files, key=lambda f: f.path)


def run_entities(bids_file) -> tuple[tuple[str, str], ...]:
    """The run entities of a pybids file, in BIDS order."""
    entities = bids_file.get_entities()
    return tuple((key, str(entities[key])) for key in ENTITY_NAMES if key in entities)


def sidecar(layout, path: Path) -> tuple[tuple[str, object], ...]:
    """The JSON sidecar of ``path`` (empty, with a warning, when it is unreadable)."""
    try:
        metadata = layout.get_metadata(str(path))
    except Exception:  # a broken JSON sidecar only loses metadata
        logger.warning("%s: cannot read the JSON sidecar; continuing without it", path)
        metadata = {}
    return tuple(sorted(metadata.items()))


def _mask_for(layout, entities: dict) -> Path | None:
    """The ``desc-brain_mask`` of a preprocessed run, if the dataset has one."""
    from bids.layout import Query

    query = {key: entities.get(key, Query.NONE) for key in ENTITY_NAMES if key != "subject"}
    matches = layout.get(
        subject=entities["subject"],
        datatype="dwi",
        suffix="mask",
        desc="brain",
        extension=IMAGE_EXTENSIONS,
        return_type="filename",
        invalid_filters="allow",
        **query,
    )
    return Path(matches[0]) if len(matches) == 1 else None


def collect_runs(layout, files, *, dataset) -> list[DwiRun]:
    """Run records of the selected DWI images (gradients by inheritance, FSL convention).

    Parameters
    ----------
    layout : bids.BIDSLayout
    files : list of pybids files
        As returned by :func:`dwi_query`.
    dataset : rumba_bids.inputs.detect.InputDataset
    """
    runs = []
    for bids_file in files:
        path = Path(bids_file.path)
        bval = layout.get_nearest(str(path), suffix="dwi", extension=".bval", all_=False)
        bvec = layout.get_nearest(str(path), suffix="dwi", extension=".bvec", all_=False)
        entities = run_entities(bids_file)
        mask = _mask_for(layout, dict(entities)) if dataset.derivative else None
        runs.append(
            DwiRun(
                dwi_file=str(path),
                bval_file=bval,
                bvec_file=bvec,
                entities=entities,
                mask_file=None if mask is None else str(mask),
                metadata=sidecar(layout, path),
                layout="bids",
                bvec_convention="fsl",
                dataset_root=str(dataset.root),
                dataset_name=dataset.dataset_name,
                mask_from_dataset=mask is not None,
            )
        )
    return runs


def find_runs(dataset, *, participant_label=(), session_label=(), filters=None) -> list[DwiRun]:
    """Every selected DWI run of a BIDS dataset."""
    layout = load_layout(dataset.root, derivative=dataset.derivative)
    _, files = dwi_query(
        layout, participant_label=participant_label, session_label=session_label, filters=filters
    )
    return collect_runs(layout, files, dataset=dataset)
