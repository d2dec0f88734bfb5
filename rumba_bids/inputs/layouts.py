"""Find the runs of a dataset with the module of its layout."""

from __future__ import annotations

from . import bids, hcpya, qsiprep
from .record import DwiRun

MODULES = {"bids": bids, "qsiprep": qsiprep, "hcpya": hcpya}


def find_runs(dataset, *, participant_label=(), session_label=(), filters=None) -> list[DwiRun]:
    """Every selected run of ``dataset`` (:class:`rumba_bids.inputs.detect.InputDataset`)."""
    return MODULES[dataset.layout].find_runs(
        dataset,
        participant_label=tuple(participant_label),
        session_label=tuple(session_label),
        filters=filters or {},
    )
