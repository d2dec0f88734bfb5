"""BIDS validation with ``bids-validator-deno`` (runs offline; optional)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import ValidationError

logger = logging.getLogger("rumba_bids.cli")
VALIDATOR_NAMES = ("bids-validator-deno",)
VALIDATOR_TIMEOUT_S = 600


def find_validator() -> str | None:
    """Path of the ``bids-validator-deno`` executable, or None.

    Looks on ``PATH`` and next to the running Python (a virtual environment's
    ``bin/`` need not be on ``PATH``).
    """
    for name in VALIDATOR_NAMES:
        found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if found:
            return found
    return None


def _relevant(location: str, *, selected_subjects, ignored_files) -> bool:
    parts = location.strip("/").split("/")
    if parts and parts[0].startswith("sub-") and parts[0][4:] not in selected_subjects:
        return False
    stem = (parts[-1] if parts else "").split(".")[0]
    return stem not in ignored_files


def validate(
    bids_dir: Path, *, selected_subjects=(), ignored_runs=(), executable: str | None = None
) -> int:
    """Run the validator on ``bids_dir``; raise :class:`ValidationError` on errors.

    Errors about participants that are not processed, and about runs the
    pre-flight checks already rejected (reported separately, with their own
    exit codes), do not fail validation.  Warnings never do.

    Parameters
    ----------
    bids_dir : Path
    selected_subjects : iterable of str
        Labels (without ``sub-``) being processed.
    ignored_runs : iterable of str
        File-name stems (``sub-01_ses-1_dwi``) of rejected runs.
    executable : str, optional
        Validator to run (default: :func:`find_validator`).

    Returns
    -------
    int
        Number of warnings reported.
    """
    executable = executable or find_validator()
    command = [executable, str(bids_dir), "--format", "json"]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=VALIDATOR_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ValidationError(
            f"the BIDS validator could not run ({error})", path=bids_dir
        ) from error
    try:
        report = json.loads(completed.stdout)
        issues = report["issues"]["issues"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValidationError(
            f"the BIDS validator failed (exit {completed.returncode}: {last})", path=bids_dir
        ) from error
    selected = set(selected_subjects)
    ignored = set(ignored_runs)
    errors = [
        issue
        for issue in issues
        if issue.get("severity") == "error"
        and _relevant(issue.get("location", ""), selected_subjects=selected, ignored_files=ignored)
    ]
    warnings = sum(issue.get("severity") == "warning" for issue in issues)
    if errors:
        first = errors[0]
        where = first.get("location", "")
        codes = sorted({issue.get("code", "?") for issue in errors})
        raise ValidationError(
            f"BIDS validation failed with {len(errors)} error(s) ({', '.join(codes)}); first: "
            f"{first.get('code')} at {where or 'dataset'} "
            "(see bids-validator-deno; --skip-bids-validation skips this check)",
            path=bids_dir,
        )
    return warnings
