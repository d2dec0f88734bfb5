"""The group level: average the participants' response functions.

Reads every ``*_model-rumba_response.json`` written by the participant level
(honouring ``--participant-label`` / ``--session-label``), averages the
compatible ones and writes ``model-rumba_desc-group_response.json`` at the root
of the output dataset, a file ``--response file --response-file`` accepts.

Responses can only be averaged when they describe the same thing: single
tensors (``Type: eigen``, 3 eigenvalues) always can; per-shell eigenvalues and
zonal-SH responses only for identical shells.  When the runs fall into several
such groups, one file per group is written with an ``acq-`` label naming the
shells (``acq-b1000b2000b3000``).
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


def _signature(estimate) -> tuple:
    if estimate.zonal_coefs is not None:
        return ("zsh", tuple(estimate.shells or ()), len(estimate.zonal_coefs))
    if estimate.evals.ndim == 2:
        return ("eigen-shells", tuple(round(b, -1) for b in (estimate.shells or ())))
    return ("eigen",)


def average_responses(estimates):
    """Mean of compatible :class:`~rumba_bids.core.response.ResponseEstimate` objects.

    Eigenvalues are averaged directly; zonal coefficients are averaged after
    dividing each response by its own S0 (signal units differ between scans),
    then scaled back by the mean S0.  ``NVoxels`` is the total.
    """
    from ..core.response import ResponseEstimate

    estimates = list(estimates)
    if not estimates:
        raise ValueError("no response to average")
    kinds = {_signature(estimate) for estimate in estimates}
    if len(kinds) != 1:
        raise ValueError(f"responses of different kinds cannot be averaged: {sorted(kinds)}")
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
        shells=estimates[0].shells,
        zonal_coefs=zonal,
        parameters={"Average": f"mean of {len(estimates)} run responses"},
    )


def _acq_label(signature: tuple) -> str:
    if signature[0] == "eigen":
        return "tensor"
    shells = signature[1]
    return "b" + "b".join(str(int(round(b))) for b in shells)


def run_group(settings) -> int:
    """Write the group response(s); return the exit code."""
    from ..core.response import ResponseEstimate
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
    groups: dict[tuple, list] = {}
    for path in paths:
        try:
            estimate = ResponseEstimate.from_dict(json.loads(path.read_text()))
        except (ValueError, json.JSONDecodeError, TypeError) as error:
            raise DataError(f"not a response file ({error})", path=path) from error
        groups.setdefault(_signature(estimate), []).append((path, estimate))
    written = []
    for signature, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        average = average_responses(estimate for _, estimate in members)
        content = average.to_dict()
        content["Sources"] = [
            f"bids::{path.relative_to(output_dir).as_posix()}" for path, _ in members
        ]
        content["NRuns"] = len(members)
        name = (
            GROUP_RESPONSE if len(groups) == 1 else f"acq-{_acq_label(signature)}_{GROUP_RESPONSE}"
        )
        target = atomic_write_json(output_dir / name, content)
        logger.info(
            "group response from %d run(s) written to %s (eigenvalues %s)",
            len(members),
            target,
            f"{np.round(np.asarray(average.evals) * 1e3, 3).tolist()} x 1e-3 mm^2/s",
        )
        written.append(target)
    if len(groups) > 1:
        logger.info(
            "the runs used %d incompatible response kinds (different shells); one group "
            "file was written per kind",
            len(groups),
        )
    return int(ExitCode.SUCCESS)
