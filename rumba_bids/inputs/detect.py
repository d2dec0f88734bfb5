"""Which layout a dataset has: detected from its files, or forced by ``--input-type``.

Detection, in order:

1. ``dataset_description.json`` names QSIPrep, in ``GeneratedBy[].Name`` (QSIPrep
   >= 1.0) or only in the legacy ``PipelineDescription.Name`` (before 1.0):
   ``qsiprep``.  ``DatasetType`` may be missing (it appears in QSIPrep 1.1):
   a dataset naming a pipeline is a derivative, never raw.  QSIPrep 0.19-0.23
   wrote into ``<output_dir>/qsiprep/``: that folder is used when given its parent.
2. Any other ``dataset_description.json``: ``bids`` (raw, or a derivative whose
   ``.bvec`` follow BIDS' FSL convention).
3. No ``dataset_description.json`` and ``<subject>/T1w/Diffusion/data.nii.gz``
   folders: ``hcpya``.

A forced layout that the dataset contradicts is refused (exit 64): reading
QSIPrep's image-axis b-vectors with the FSL rule mirrors every fibre.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..interfaces.errors import DataError
from .errors import InputMissingError, UsageError
from .record import LAYOUTS

#: Folder of the HCP-YA preprocessed diffusion data, relative to a subject folder.
HCP_DIFFUSION = Path("T1w") / "Diffusion"
HCP_SOURCE = {
    "Name": "HCP minimal preprocessing pipelines",
    "CodeURL": "https://github.com/Washington-University/HCPpipelines",
    "Description": "input of rumba-bids: T1w/Diffusion/data.nii.gz, bvals, bvecs",
}


@dataclass(frozen=True)
class InputDataset:
    """An input dataset and its layout.

    Attributes
    ----------
    root : Path
        Where the runs are found (``bids_dir``, or ``bids_dir/qsiprep``).
    layout : str
        Key of :data:`rumba_bids.inputs.record.LAYOUTS`.
    description : dict
        ``dataset_description.json`` (empty for HCP-YA trees).
    derivative : bool
        Preprocessed data (QSIPrep, HCP-YA, a BIDS derivative).
    pipeline : str or None
        The pipeline that made the data, as its description names it.
    pipeline_version : str or None
    """

    root: Path
    layout: str
    description: dict = field(default_factory=dict)
    derivative: bool = False
    pipeline: str | None = None
    pipeline_version: str | None = None

    @property
    def dataset_name(self) -> str:
        """Key of this dataset in the outputs' ``DatasetLinks`` and ``Sources`` URIs."""
        if self.layout == "bids":
            return "preprocessed" if self.derivative else "raw"
        return self.layout

    def generated_by(self) -> list[dict]:
        """``GeneratedBy`` entries of the pipeline that made the input (may be empty)."""
        if self.layout == "hcpya":
            return [dict(HCP_SOURCE)]
        entries = [
            dict(entry)
            for entry in self.description.get("GeneratedBy") or []
            if isinstance(entry, dict) and entry.get("Name")
        ]
        legacy = self.description.get("PipelineDescription")
        if not entries and isinstance(legacy, dict) and legacy.get("Name"):
            entries = [{k: v for k, v in legacy.items() if k in ("Name", "Version", "CodeURL")}]
        return entries

    def summary(self) -> str:
        """One log line naming the layout."""
        text = f"input layout {self.layout} ({LAYOUTS[self.layout]})"
        if self.pipeline:
            version = f" {self.pipeline_version}" if self.pipeline_version else ""
            text += f", made by {self.pipeline}{version}"
        return text


def read_dataset_description(root: Path) -> dict:
    """The dataset description, with the errors a user can act on."""
    path = root / "dataset_description.json"
    if not path.is_file():
        raise InputMissingError(
            "not a BIDS dataset: dataset_description.json is missing", path=root
        )
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"is not valid JSON ({error})", path=path) from error
    if not isinstance(description, dict):
        raise DataError("must hold a JSON object", path=path)
    return description


def pipelines(description: dict) -> list[tuple[str, str | None]]:
    """(name, version) of every pipeline the description names (new and legacy keys)."""
    named = []
    for entry in description.get("GeneratedBy") or []:
        if isinstance(entry, dict) and isinstance(entry.get("Name"), str):
            named.append((entry["Name"], entry.get("Version")))
    legacy = description.get("PipelineDescription")
    if isinstance(legacy, dict) and isinstance(legacy.get("Name"), str):
        named.append((legacy["Name"], legacy.get("Version")))
    return named


def _qsiprep(description: dict) -> tuple[str, str | None] | None:
    for name, version in pipelines(description):
        if name.strip().lower() == "qsiprep":
            return name, None if version is None else str(version)
    return None


def hcp_subjects(root: Path) -> list[Path]:
    """Subject folders of an HCP-YA tree (those holding ``T1w/Diffusion/``)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / HCP_DIFFUSION).is_dir())


def _from_description(root: Path, description: dict) -> InputDataset:
    qsiprep = _qsiprep(description)
    named = pipelines(description)
    derivative = description.get("DatasetType") == "derivative" or (
        description.get("DatasetType") is None and bool(named)
    )
    if qsiprep is not None:
        return InputDataset(root, "qsiprep", description, True, *qsiprep)
    pipeline, version = named[0] if (derivative and named) else (None, None)
    return InputDataset(
        root, "bids", description, derivative, pipeline, None if version is None else str(version)
    )


def detect_layout(bids_dir, input_type: str | None = None) -> InputDataset:
    """The layout of ``bids_dir``; with ``input_type``, check the dataset has it.

    Raises
    ------
    InputMissingError
        No dataset_description.json and not an HCP-YA tree (66).
    DataError
        dataset_description.json is not a JSON object (65).
    UsageError
        ``input_type`` contradicts the dataset (64).
    """
    root = Path(bids_dir)
    if input_type is not None and input_type not in LAYOUTS:
        raise UsageError(f"--input-type must be one of {', '.join(LAYOUTS)}, got {input_type}")
    has_description = (root / "dataset_description.json").is_file()
    nested = root / "qsiprep"
    if (
        not has_description
        and (nested / "dataset_description.json").is_file()
        and input_type in (None, "qsiprep")
    ):
        nested_dataset = _from_description(nested, read_dataset_description(nested))
        if nested_dataset.layout == "qsiprep":
            return nested_dataset
    if input_type == "hcpya" or (input_type is None and not has_description):
        subjects = hcp_subjects(root)
        if subjects:
            return InputDataset(root, "hcpya", {}, True, "HCP-YA minimal preprocessing")
        if input_type == "hcpya":
            raise UsageError(
                f"--input-type hcpya: no <subject>/{HCP_DIFFUSION.as_posix()}/ folder here; "
                "an HCP-YA tree holds e.g. 100307/T1w/Diffusion/data.nii.gz",
                path=root,
            )
    dataset = _from_description(root, read_dataset_description(root))
    if input_type is None or input_type == dataset.layout:
        return dataset
    names = ", ".join(name for name, _ in pipelines(dataset.description)) or "no pipeline"
    if dataset.layout == "qsiprep":
        raise UsageError(
            f"--input-type {input_type}: dataset_description.json names QSIPrep, whose .bvec "
            "hold image-axis vectors (not FSL's); use --input-type qsiprep or leave it out",
            path=root,
        )
    raise UsageError(
        f"--input-type {input_type}: dataset_description.json names {names} "
        f"({'derivative' if dataset.derivative else 'raw'} dataset), not QSIPrep; "
        "its layout is bids",
        path=root,
    )
