"""The one record of a DWI run: found by a layout, checked, built into a graph, named.

A layout module (:mod:`~rumba_bids.inputs.bids`, :mod:`~rumba_bids.inputs.qsiprep`,
:mod:`~rumba_bids.inputs.hcpya`) makes a :class:`DwiRun` with the run's files,
BIDS entities, sidecar metadata and the b-vector convention of its pipeline;
the pre-flight check (:func:`rumba_bids.inputs.check.check_run`) returns the same
record with what it learnt (shape, shells, mask size); the graph builder
(:func:`rumba_bids.workflows.bids.init_rumba_bids_wf`) takes it and names the
outputs and their ``Sources`` from it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: BIDS entities that distinguish runs, in BIDS order, with their key in file names.
#: They are kept in the output names (``desc`` is not: it names the input's processing).
RUN_ENTITIES = (
    ("subject", "sub"),
    ("session", "ses"),
    ("acquisition", "acq"),
    ("reconstruction", "rec"),
    ("direction", "dir"),
    ("run", "run"),
    ("space", "space"),
)
#: Input layouts (``--input-type``, QSIRecon's spelling) and what they hold.
LAYOUTS = {
    "bids": "BIDS dataset (raw, or a derivative following BIDS' FSL b-vector convention)",
    "qsiprep": "QSIPrep derivatives (desc-preproc DWI, space-ACPC >= 0.24 or space-T1w before)",
    "hcpya": "HCP-YA minimally preprocessed tree (<subject>/T1w/Diffusion/)",
}
#: What each b-vector convention means, for log lines and the README.
CONVENTIONS = {
    "fsl": "FSL: voxel axes, x negated when det(affine) > 0",
    "ijk": "image axes of the grid, no flip",
}


@dataclass(frozen=True)
class DwiRun:
    """One DWI run, from collection to outputs.

    Attributes
    ----------
    dwi_file : str
        Absolute path of the 4D series.
    bval_file, bvec_file : str or None
        Gradient files (``None`` when the layout found none: the check refuses it).
    entities : tuple of (str, str)
        BIDS entities (long names, e.g. ``("subject", "01")``), in BIDS order.
    mask_file : str or None
        Brain mask given with the data (QSIPrep, HCP-YA) or by ``--mask-file``.
    metadata : tuple of (str, object)
        The DWI sidecar, when there is one.
    layout : str
        Key of :data:`LAYOUTS`.
    bvec_convention : {'fsl', 'ijk'}
        How the ``.bvec`` file is read (see :mod:`rumba_bids.interfaces.validation`).
    dataset_root : str or None
        Root of the input dataset (``Sources`` are relative to it).
    dataset_name : str
        Key of the input dataset in ``DatasetLinks`` (``raw``, ``qsiprep``, ...).
    mask_from_dataset : bool
        Whether ``mask_file`` belongs to the input dataset (named in ``Sources``).
    shape, n_b0, shells, bvals, mask_voxels
        Filled by the pre-flight check (:attr:`checked`).
    """

    dwi_file: str
    bval_file: str | None
    bvec_file: str | None
    entities: tuple[tuple[str, str], ...]
    mask_file: str | None = None
    metadata: tuple[tuple[str, object], ...] = ()
    layout: str = "bids"
    bvec_convention: str = "fsl"
    dataset_root: str | None = None
    dataset_name: str = "raw"
    mask_from_dataset: bool = False
    shape: tuple[int, ...] = ()
    n_b0: int | None = None
    shells: tuple[float, ...] = ()
    bvals: tuple[float, ...] = ()
    mask_voxels: int | None = None

    def __post_init__(self):
        entities = dict(self.entities)
        if "subject" not in entities:
            raise ValueError(f"a DWI run needs a subject entity, got {self.entities}")
        for key, value in entities.items():
            if not re.fullmatch(r"[a-zA-Z0-9]+", str(value)):
                raise ValueError(f"entity {key}={value!r} is not a BIDS label")
        if self.bvec_convention not in CONVENTIONS:
            raise ValueError(f"bvec_convention must be one of {tuple(CONVENTIONS)}")

    # -- naming -------------------------------------------------------------------
    @property
    def entity_dict(self) -> dict:
        return dict(self.entities)

    @property
    def subject(self) -> str:
        return self.entity_dict["subject"]

    @property
    def label(self) -> str:
        """``sub-01_ses-1_run-2``-style name of the run (its output prefix)."""
        entities = self.entity_dict
        return "_".join(
            f"{key}-{entities[name]}" for name, key in RUN_ENTITIES if name in entities
        )

    @property
    def workflow_name(self) -> str:
        return re.sub(r"[^a-zA-Z0-9]", "_", self.label).lower() + "_wf"

    @property
    def name_source(self) -> str:
        """A BIDS path holding the run's entities: the outputs are named after it.

        >>> DwiRun("/hcp/100307/T1w/Diffusion/data.nii.gz", None, None,
        ...        (("subject", "100307"),)).name_source
        'sub-100307/dwi/sub-100307_dwi.nii.gz'
        """
        entities = self.entity_dict
        folder = PurePosixPath(f"sub-{self.subject}")
        if "session" in entities:
            folder = folder / f"ses-{entities['session']}"
        return str(folder / "dwi" / f"{self.label}_dwi.nii.gz")

    # -- provenance -----------------------------------------------------------------
    def _uri(self, path) -> str:
        if self.dataset_root is None:
            return Path(path).as_uri()
        relative = Path(path).relative_to(self.dataset_root).as_posix()
        return f"bids:{self.dataset_name}:{relative}"

    @property
    def sources(self) -> tuple[str, ...]:
        """BIDS URIs of the input files (DWI, gradients, the dataset's mask)."""
        files = [self.dwi_file, self.bval_file, self.bvec_file]
        if self.mask_file and self.mask_from_dataset:
            files.append(self.mask_file)
        return tuple(self._uri(path) for path in files if path)

    def with_mask(self, mask_file) -> DwiRun:
        """The record with a user's mask (``--mask-file``) instead of the dataset's."""
        return dataclasses.replace(
            self, mask_file=None if mask_file is None else str(mask_file), mask_from_dataset=False
        )

    # -- pre-flight facts -------------------------------------------------------------
    @property
    def checked(self) -> bool:
        """Whether the pre-flight check filled the facts below."""
        return bool(self.shape)

    @property
    def n_volumes(self) -> int:
        return int(self.shape[3])

    @property
    def n_shells(self) -> int:
        return len(self.shells)

    def describe(self) -> str:
        """One line: layout, b-vector convention, grid, volumes, shells, mask."""
        text = (
            f"{self.label}: {self.layout} layout, b-vectors {self.bvec_convention} "
            f"({CONVENTIONS[self.bvec_convention]})"
        )
        if self.checked:
            text += (
                f"; {'x'.join(str(s) for s in self.shape[:3])}, {self.n_volumes} volumes "
                f"({self.n_b0} b0, shells {'/'.join(f'{b:.0f}' for b in self.shells)})"
            )
        if self.mask_file:
            text += f", mask {Path(self.mask_file).name}"
        return text
