"""The group level: average the participants' response functions.

Reads every ``*_model-rumba_response.json`` written by the participant level
(honouring ``--participant-label`` / ``--session-label``), averages the
compatible ones and writes ``model-rumba_desc-group_response.json`` at the root
of the output dataset, a file ``--response file --response-file`` accepts.

Responses are averaged only when they describe the same thing: the same kind
(single tensor, per-shell eigenvalues, zonal SH of one degree) estimated at
the same shells (within the gradient table's shell tolerance).  Responses from
different shells are never averaged: when the runs fall into several groups,
one file per group is written with an ``acq-`` label naming the kind and the
shells (``acq-tensorb2000``, ``acq-pershellb1000b2000b3000``, ``acq-zshb2000``;
``acq-tensornoshells`` for tensors that record no shells).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .errors import DataError, ExitCode, InputMissingError

logger = logging.getLogger("rumba_bids.cli")
GROUP_RESPONSE = "model-rumba_desc-group_response.json"


def find_responses(output_dir: Path, *, participant_label=(), session_label=()) -> list[Path]:
    """Per-run response files of the selected participants and sessions."""
    from ..interfaces.derivatives import parse_entities

    found = []
    for path in sorted(output_dir.glob("sub-*/**/*_model-rumba_response.json")):
        entities = parse_entities(path)
        if participant_label and entities.get("subject") not in participant_label:
            continue
        if session_label and entities.get("session") not in session_label:
            continue
        found.append(path)
    return found


def _kind(estimate) -> tuple:
    """(kind, size): what must be equal, besides the shells, to average responses."""
    if estimate.zonal_coefs is not None:
        return ("zsh", len(estimate.zonal_coefs))
    if estimate.evals.ndim == 2:
        return ("pershell", len(estimate.evals))
    return ("tensor", 3)


def _same_group(first, second) -> bool:
    from ..core.response import shells_match

    if _kind(first) != _kind(second):
        return False
    if first.shells is None or second.shells is None:
        return first.shells is None and second.shells is None
    return shells_match(first.shells, second.shells)


def group_responses(estimates) -> list[list[int]]:
    """Indices of ``estimates`` in groups that may be averaged (same kind, same shells)."""
    groups: list[list[int]] = []
    for index, estimate in enumerate(estimates):
        for group in groups:
            if _same_group(estimates[group[0]], estimate):
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def average_responses(estimates):
    """Mean of compatible :class:`~rumba_bids.core.response.ResponseEstimate` objects.

    Eigenvalues are averaged directly; zonal coefficients are averaged after
    dividing each response by its own S0 (signal units differ between scans),
    then scaled back by the mean S0.  ``NVoxels`` is the total.
    """
    from ..core.response import ResponseEstimate, format_shells

    estimates = list(estimates)
    if not estimates:
        raise ValueError("no response to average")
    if len(group_responses(estimates)) != 1:
        described = sorted({f"{_kind(e)[0]} at {format_shells(e.shells)}" for e in estimates})
        raise ValueError(
            f"responses of different kinds or shells cannot be averaged: {', '.join(described)}"
        )
    evals = np.mean([estimate.evals for estimate in estimates], axis=0)
    s0_values = [estimate.S0 for estimate in estimates if estimate.S0 is not None]
    mean_s0 = float(np.mean(s0_values)) if s0_values else None
    zonal = None
    if estimates[0].zonal_coefs is not None:
        zonal = mean_s0 * np.mean(
            [estimate.zonal_coefs / estimate.S0 for estimate in estimates], axis=0
        )
    methods = {estimate.method for estimate in estimates}
    return ResponseEstimate(
        method=methods.pop() if len(methods) == 1 else "file",
        evals=evals,
        S0=mean_s0,
        n_voxels=int(sum(estimate.n_voxels for estimate in estimates)),
        ratio=np.mean([np.asarray(estimate.ratio, dtype=float) for estimate in estimates], axis=0),
        shells=None if estimates[0].shells is None else _mean_shells(estimates),
        zonal_coefs=zonal,
        parameters={"Average": f"mean of {len(estimates)} run responses"},
    )


def _mean_shells(estimates) -> tuple:
    return tuple(
        float(b) for b in np.mean([np.sort(np.asarray(e.shells)) for e in estimates], axis=0)
    )


def _acq_label(estimate) -> str:
    """``tensorb2000``, ``pershellb1000b2000b3000``, ``zshb2000``, ``tensornoshells``."""
    if estimate.shells is None:
        return f"{_kind(estimate)[0]}noshells"
    return _kind(estimate)[0] + "".join(f"b{round(float(b))}" for b in sorted(estimate.shells))


def run_group(settings) -> int:
    """Write the group response(s); return the exit code."""
    from ..core.response import ResponseEstimate, format_shells
    from ..interfaces.derivatives import atomic_write_json

    output_dir = settings.output_dir
    if not output_dir.is_dir():
        raise InputMissingError(
            "output_dir does not exist; run the participant level first", path=output_dir
        )
    paths = find_responses(
        output_dir,
        participant_label=settings.participant_label,
        session_label=settings.session_label,
    )
    if not paths:
        raise InputMissingError(
            "no *_model-rumba_response.json found for the selected participants; "
            "run the participant level first",
            path=output_dir,
        )
    found = []
    for path in paths:
        try:
            estimate = ResponseEstimate.from_dict(json.loads(path.read_text()))
        except (ValueError, json.JSONDecodeError, TypeError) as error:
            raise DataError(f"not a response file ({error})", path=path) from error
        found.append((path, estimate))
    groups = [[found[i] for i in group] for group in group_responses([e for _, e in found])]
    written = []
    for members in sorted(groups, key=lambda group: -len(group)):
        average = average_responses(estimate for _, estimate in members)
        content = average.to_dict()
        content["Sources"] = [
            f"bids::{path.relative_to(output_dir).as_posix()}" for path, _ in members
        ]
        content["NRuns"] = len(members)
        name = (
            GROUP_RESPONSE if len(groups) == 1 else f"acq-{_acq_label(average)}_{GROUP_RESPONSE}"
        )
        target = atomic_write_json(output_dir / name, content)
        logger.info(
            "group response from %d run(s) at %s written to %s (eigenvalues %s)",
            len(members),
            format_shells(average.shells),
            target,
            f"{np.round(np.asarray(average.evals) * 1e3, 3).tolist()} x 1e-3 mm^2/s",
        )
        written.append(target)
    if len(groups) > 1:
        logger.info(
            "the runs' responses fall into %d groups (different kinds or shells, never "
            "averaged together); one group file was written per group",
            len(groups),
        )
    return int(ExitCode.SUCCESS)
