"""HCP-YA layout: the minimally preprocessed diffusion data of the Human Connectome Project.

::

    <root>/<subject>/T1w/Diffusion/data.nii.gz  bvals  bvecs  nodif_brain_mask.nii.gz

The subject label is the folder name (``100307``; ``--participant-label 100307``
or ``sub-100307``); there are no sessions.  ``bvecs``/``bvals`` follow FSL's
convention (the HCP pipelines run FSL's ``eddy`` and ``dtifit`` on them), and
``nodif_brain_mask.nii.gz`` is on the DWI grid: it is used unless ``--mask-file``
is given.  Outputs are named ``sub-<subject>_...`` (no space entity: the input
names none).
"""

from __future__ import annotations

import logging
import re

from .detect import HCP_DIFFUSION, hcp_subjects
from .errors import NoRunsSelectedError, UsageError
from .record import DwiRun

logger = logging.getLogger("rumba_bids.inputs")

FILES = {
    "dwi": "data.nii.gz",
    "bval": "bvals",
    "bvec": "bvecs",
    "mask": "nodif_brain_mask.nii.gz",
}


def find_runs(dataset, *, participant_label=(), session_label=(), filters=None) -> list[DwiRun]:
    """One run per subject folder of an HCP-YA tree.

    Raises
    ------
    UsageError
        Unknown participant label; session labels or filters given (HCP-YA
        trees have neither sessions nor BIDS entities to filter) (64).
    NoRunsSelectedError
        No subject folder holds ``T1w/Diffusion/data.nii.gz`` (18).
    """
    root = dataset.root
    if session_label:
        raise UsageError("--session-label: an HCP-YA tree has no sessions", path=root)
    if filters:
        raise UsageError(
            "--bids-filter-file does not apply to an HCP-YA tree (no BIDS entities); "
            "select subjects with --participant-label",
            path=root,
        )
    folders = {}
    for folder in hcp_subjects(root):
        if re.fullmatch(r"[a-zA-Z0-9]+", folder.name):
            folders[folder.name] = folder
        else:
            logger.warning("%s: not a BIDS label (letters and digits); skipped", folder)
    unknown = [label for label in participant_label if label not in folders]
    if unknown:
        raise UsageError(
            f"unknown participant label(s) {', '.join(unknown)}; the HCP-YA tree has "
            f"{', '.join(folders) or 'no subjects'}",
            path=root,
        )
    selected = list(participant_label) or list(folders)
    runs = []
    for label in selected:
        diffusion = folders[label] / HCP_DIFFUSION
        files = {key: diffusion / name for key, name in FILES.items()}
        if not files["dwi"].is_file():
            logger.warning("%s: no %s; subject skipped", diffusion, FILES["dwi"])
            continue
        mask = files["mask"] if files["mask"].is_file() else None
        if mask is None:
            logger.info("%s: no %s; masking it", diffusion, FILES["mask"])
        runs.append(
            DwiRun(
                dwi_file=str(files["dwi"]),
                bval_file=str(files["bval"]),
                bvec_file=str(files["bvec"]),
                entities=(("subject", label),),
                mask_file=None if mask is None else str(mask),
                layout="hcpya",
                bvec_convention="fsl",
                dataset_root=str(root),
                dataset_name=dataset.dataset_name,
                mask_from_dataset=mask is not None,
            )
        )
    if not runs:
        raise NoRunsSelectedError(
            f"no {HCP_DIFFUSION.as_posix()}/{FILES['dwi']} in the selected subject folders",
            path=root,
        )
    return runs
