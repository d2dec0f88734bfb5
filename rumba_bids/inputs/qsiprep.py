"""QSIPrep layout: preprocessed DWI series of QSIPrep derivatives (every layout since 0.19).

QSIPrep writes, per preprocessed series (``acq``/``rec``/``dir``/``run`` kept)::

    sub-<l>[_ses-<s>][_acq-..][_rec-..][_dir-..][_run-..]_space-ACPC_desc-preproc_dwi.nii.gz
        .bval  .bvec  .b  _b_table.txt (or .b_table.txt)  .json
    sub-<l>[...]_space-ACPC_desc-brain_mask.nii.gz          (the DWI grid)

``space-ACPC`` from 0.24, ``space-T1w`` (the same AC-PC frame) in 0.19-0.23.
Images are LPS+.  The ``.bvec`` hold vectors along the image axes ("DIPY
convention", not FSL's): read with ``bvec_convention='ijk'``, never flipped.
Evidence: PennLINC/qsiprep#530 (maintainer: "the bvecs are relative to the LPS+
image axis ... If you want the gradient info in RAS+ world coordinates, there is
also a .b file in mrtrix format"); ``ConformDwi`` in ``qsiprep/interfaces/images.py``
reorients the series to LPS+ and permutes/negates the b-vector rows with the same
axis transform (so they stay image-axis vectors), and ``bvec_to_rasb`` there
negates x before handing its own ``.bvec`` to ``mrinfo -fslgrad`` (undoing the
flip FSL's rule would apply to an LPS+ image).

The gradient files are the series' own siblings (QSIPrep writes no inherited
ones); the ``.bval`` may hold one value per line.  The DWI-grid
``desc-brain_mask`` beside the series is used unless ``--mask-file`` is given
(the ``anat/`` mask is on the T1w grid and is never used).
"""

from __future__ import annotations

import logging
from pathlib import Path

from .bids import dwi_query, load_layout, run_entities, sidecar
from .errors import InputMissingError
from .record import DwiRun

logger = logging.getLogger("rumba_bids.inputs")

#: The ``desc`` of QSIPrep's preprocessed series.
PREPROC = "preproc"
SUFFIX = f"_desc-{PREPROC}_dwi"


def _stem(path: Path) -> str:
    name = path.name
    for extension in (".nii.gz", ".nii"):
        if name.endswith(extension):
            return name[: -len(extension)]
    return name


def run_files(dwi_file: Path) -> dict:
    """The sibling files of a preprocessed series (present or not)."""
    stem = _stem(dwi_file)
    prefix = stem[: -len(SUFFIX)] if stem.endswith(SUFFIX) else stem
    folder = dwi_file.parent
    return {
        "bval": folder / f"{stem}.bval",
        "bvec": folder / f"{stem}.bvec",
        "mask": folder / f"{prefix}_desc-brain_mask.nii.gz",
    }


def find_runs(dataset, *, participant_label=(), session_label=(), filters=None) -> list[DwiRun]:
    """Every selected ``desc-preproc`` DWI series of a QSIPrep dataset.

    Raises
    ------
    InputMissingError
        The dataset holds no ``desc-preproc`` DWI at all (66).
    NoRunsSelectedError, UsageError
        As :func:`rumba_bids.inputs.bids.dwi_query`.
    """
    layout = load_layout(dataset.root, derivative=True)
    everything = layout.get(
        datatype="dwi",
        suffix="dwi",
        desc=PREPROC,
        extension=[".nii", ".nii.gz"],
        invalid_filters="allow",
    )
    if not everything:
        found = sorted(Path(f.path).name for f in layout.get(datatype="dwi", suffix="dwi"))
        detail = f"; DWI files found: {', '.join(found[:3])}" if found else ""
        raise InputMissingError(
            "QSIPrep dataset without any desc-preproc DWI series "
            f"(expected sub-*/[ses-*/]dwi/*_space-ACPC{SUFFIX}.nii.gz){detail}",
            path=dataset.root,
        )
    _, files = dwi_query(
        layout,
        participant_label=participant_label,
        session_label=session_label,
        filters=filters,
        base={"desc": PREPROC},
        what="desc-preproc DWI series",
    )
    runs = []
    for bids_file in files:
        path = Path(bids_file.path)
        siblings = run_files(path)
        mask = siblings["mask"] if siblings["mask"].is_file() else None
        if mask is None:
            logger.info("%s: no DWI-grid desc-brain_mask beside it; masking it", path.name)
        runs.append(
            DwiRun(
                dwi_file=str(path),
                bval_file=str(siblings["bval"]),
                bvec_file=str(siblings["bvec"]),
                entities=run_entities(bids_file),
                mask_file=None if mask is None else str(mask),
                metadata=sidecar(layout, path),
                layout="qsiprep",
                bvec_convention="ijk",
                dataset_root=str(dataset.root),
                dataset_name=dataset.dataset_name,
                mask_from_dataset=mask is not None,
            )
        )
    return runs
