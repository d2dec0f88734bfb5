"""Find the DWI runs to process with pybids (at build time, never inside a node)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, InputMissingError, NoRunsSelectedError, UsageError

logger = logging.getLogger("rumba_bids.cli")

#: Entities that distinguish runs and are kept in the output names (BIDS order).
RUN_ENTITIES = ("subject", "session", "acquisition", "direction", "run", "space")
IMAGE_EXTENSIONS = [".nii", ".nii.gz"]


@dataclass(frozen=True)
class CollectedRun:
    """Files of one DWI run found in the dataset (before checks)."""

    dwi_file: Path
    bval_file: Path | None
    bvec_file: Path | None
    mask_file: Path | None
    entities: tuple[tuple[str, str], ...]
    metadata: tuple[tuple[str, object], ...]

    @property
    def entity_dict(self) -> dict:
        return dict(self.entities)

    @property
    def label(self) -> str:
        """``sub-01_ses-1_run-2``-style name of the run."""
        keys = {
            "subject": "sub",
            "session": "ses",
            "acquisition": "acq",
            "direction": "dir",
            "run": "run",
            "space": "space",
        }
        return "_".join(f"{keys[k]}-{v}" for k, v in self.entities if k in keys)


def read_dataset_description(bids_dir: Path) -> dict:
    """The dataset description, with the errors a user can act on."""
    path = bids_dir / "dataset_description.json"
    if not path.is_file():
        raise InputMissingError(
            "not a BIDS dataset: dataset_description.json is missing", path=bids_dir
        )
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"is not valid JSON ({error})", path=path) from error
    if not isinstance(description, dict):
        raise DataError("must hold a JSON object", path=path)
    return description


def is_derivative_dataset(description: dict) -> bool:
    return description.get("DatasetType") == "derivative"


def load_layout(bids_dir: Path, *, derivative: bool):
    """A pybids layout of ``bids_dir`` (in memory; nothing is written there)."""
    from bids import BIDSLayout

    config = ["bids", "derivatives"] if derivative else ["bids"]
    try:
        return BIDSLayout(str(bids_dir), validate=False, is_derivative=derivative, config=config)
    except Exception as error:  # pybids raises many kinds on malformed datasets
        raise DataError(f"pybids cannot index the dataset ({error})", path=bids_dir) from error


def _query_value(value):
    from bids.layout import Query

    if value is None:
        return Query.NONE
    if value == "*":
        return Query.ANY
    return value


def dwi_query(
    layout, *, participant_label=(), session_label=(), filters=None
) -> tuple[dict, list]:
    """Apply labels and filters; return (query, files).

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
    query = {"datatype": "dwi", "suffix": "dwi", "extension": IMAGE_EXTENSIONS}
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
            f"no DWI run{detail} (participants with DWI: {', '.join(subjects) or 'none'})",
            path=layout.root,
        )
    return query, sorted(files, key=lambda f: f.path)


def _mask_for(layout, entities: dict) -> Path | None:
    """The ``desc-brain_mask`` of a preprocessed run, if the dataset has one."""
    from bids.layout import Query

    query = {key: entities.get(key, Query.NONE) for key in RUN_ENTITIES if key != "subject"}
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


def collect_runs(layout, files, *, derivative: bool) -> list[CollectedRun]:
    """Gradient files, masks and metadata of the selected DWI images."""
    runs = []
    for bids_file in files:
        path = Path(bids_file.path)
        entities = bids_file.get_entities()
        kept = tuple(
            (key, str(entities[key])) for key in (*RUN_ENTITIES, "desc") if key in entities
        )
        bval = layout.get_nearest(str(path), suffix="dwi", extension=".bval", all_=False)
        bvec = layout.get_nearest(str(path), suffix="dwi", extension=".bvec", all_=False)
        try:
            metadata = layout.get_metadata(str(path))
        except Exception:  # a broken JSON sidecar only loses metadata
            logger.warning("%s: cannot read the JSON sidecar; continuing without it", path)
            metadata = {}
        mask = _mask_for(layout, entities) if derivative else None
        runs.append(
            CollectedRun(
                dwi_file=path,
                bval_file=None if bval is None else Path(bval),
                bvec_file=None if bvec is None else Path(bvec),
                mask_file=mask,
                entities=kept,
                metadata=tuple(sorted(metadata.items())),
            )
        )
    return runs
