"""The demo phantom written the way preprocessing pipelines write their outputs.

``rumba-bids-demo --layout``:

``qsiprep``
    QSIPrep >= 0.24: ``DIR/sub-<l>/[ses-<s>/]dwi/<prefix>_space-ACPC_desc-preproc_dwi``
    ``.nii.gz/.bval/.bvec/.b/.b_table.txt/.json`` and
    ``<prefix>_space-ACPC_desc-brain_mask.nii.gz``;
    ``dataset_description.json`` with ``GeneratedBy: [{Name: qsiprep}]``.  The grid
    is reoriented to LPS+ as QSIPrep does; ``.bvec`` holds vectors along the LPS+
    image axes, ``.bval`` one value per line, ``.b`` MRtrix ``gx gy gz b`` in RAS+
    world coordinates, ``.b_table.txt`` DSI Studio's ``b gx gy gz`` (not read by
    rumba-bids).
``qsiprep-legacy``
    QSIPrep 0.19-0.23: the same under ``DIR/qsiprep/`` with ``space-T1w``, a
    ``dataset_description.json`` naming QSIPrep only in ``PipelineDescription``
    and no ``DatasetType``.
``hcpya``
    HCP-YA: ``DIR/<subject>/T1w/Diffusion/{data.nii.gz,bvals,bvecs,nodif_brain_mask.nii.gz}``
    with FSL b-vectors; subjects ``100307``, ``100308``, ... (no sessions).

The ground truth goes to ``DIR/derivatives/groundtruth/`` on the grid of the
images (LPS+ for the QSIPrep layouts), directions along that grid's axes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

LAYOUTS = ("bids", "qsiprep", "qsiprep-legacy", "hcpya")
QSIPREP_VERSIONS = {"qsiprep": "1.0.1", "qsiprep-legacy": "0.21.4"}
#: First HCP-YA subject id of the demo (the ids of the HCP-YA release look like this).
HCP_FIRST_ID = 100307
_PHANTOM_VOLUMES = ("brain_mask", "head_mask", "tissue", "f_wm", "f_gm", "f_csf")
_PHANTOM_STACKS = ("signal", "fibre_fractions", "n_fibres")


def data_root(bids_dir: Path, layout: str) -> Path:
    """Where the runs of ``layout`` go (QSIPrep 0.19-0.23 wrote into ``qsiprep/``)."""
    return bids_dir / "qsiprep" if layout == "qsiprep-legacy" else bids_dir


def dataset_description(layout: str, *, bids_version: str, version: str) -> dict | None:
    """``dataset_description.json`` of the layout's data root (None: HCP-YA has none)."""
    if layout == "hcpya":
        return None
    if layout == "qsiprep":
        return {
            "Name": "QSIPrep output (rumba-bids demo phantom)",
            "BIDSVersion": bids_version,
            "DatasetType": "derivative",
            "GeneratedBy": [
                {"Name": "qsiprep", "Version": QSIPREP_VERSIONS[layout]},
                {"Name": "rumba-bids-demo", "Version": version},
            ],
        }
    return {  # QSIPrep < 1.0: no DatasetType, the pipeline only in PipelineDescription
        "Name": "qsiprep output",
        "BIDSVersion": "1.1.1",
        "PipelineDescription": {"Name": "qsiprep", "Version": QSIPREP_VERSIONS[layout]},
    }


def subject_label(layout: str, subject: int) -> str:
    return str(HCP_FIRST_ID + subject - 1) if layout == "hcpya" else f"{subject:02d}"


def reorient(phantom, affine, axcodes=("L", "P", "S")):
    """The phantom on the grid of ``affine`` reoriented to ``axcodes``; (phantom, affine).

    Arrays are flipped/permuted as ``nibabel``'s ``as_reoriented`` does, and the
    voxel-frame vectors (b-vectors, fibre directions) follow the same axis map.
    """
    import nibabel as nib

    from ..core.gradients import GradientTable

    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(axcodes)
    )
    shape = phantom.brain_mask.shape
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape)

    def vectors(array):
        out = np.empty_like(array)
        for axis, (target, flip) in enumerate(ornt):
            out[..., int(target)] = flip * array[..., axis]
        return out

    def volume(array):
        return np.ascontiguousarray(nib.orientations.apply_orientation(array, ornt))

    changes = {name: volume(getattr(phantom, name)) for name in _PHANTOM_VOLUMES}
    changes.update({name: volume(getattr(phantom, name)) for name in _PHANTOM_STACKS})
    changes["fibre_directions"] = vectors(volume(phantom.fibre_directions))
    gtab = phantom.gtab
    changes["gtab"] = GradientTable(
        gtab.bvals, vectors(gtab.bvecs), b0_threshold=gtab.b0_threshold
    )
    return dataclasses.replace(phantom, **changes), new_affine


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


def write_qsiprep_run(folder: Path, prefix: str, *, space: str, image, phantom, affine, save):
    """One QSIPrep series (image already on the LPS+ grid); returns the DWI path."""
    from ..core.gradients import voxel_to_world

    gtab = phantom.gtab
    stem = folder / f"{prefix}_space-{space}_desc-preproc_dwi"
    dwi = Path(f"{stem}.nii.gz")
    save(image, affine, dwi, dtype=np.int16)
    bvals = [int(round(b)) for b in gtab.bvals]
    _write_text(Path(f"{stem}.bval"), "".join(f"{b}\n" for b in bvals))
    rows = [" ".join(f"{v:.6f}" for v in gtab.bvecs[:, axis]) for axis in range(3)]
    _write_text(Path(f"{stem}.bvec"), "\n".join(rows) + "\n")
    world = voxel_to_world(gtab.bvecs, affine)  # RAS+ world (MRtrix .b)
    _write_text(
        Path(f"{stem}.b"),
        "".join(f"{x:.6f} {y:.6f} {z:.6f} {b}\n" for (x, y, z), b in zip(world, bvals)),
    )
    _write_text(
        Path(f"{stem}.b_table.txt"),
        "".join(f"{b} {-x:.6f} {-y:.6f} {z:.6f}\n" for (x, y, z), b in zip(world, bvals)),
    )
    Path(f"{stem}.json").write_text(
        json.dumps({"RepetitionTime": 3.5, "EchoTime": 0.08, "SkullStripped": False}, indent=2)
    )
    save(
        phantom.brain_mask,
        affine,
        folder / f"{prefix}_space-{space}_desc-brain_mask.nii.gz",
        dtype=np.uint8,
    )
    return dwi


def write_hcp_run(folder: Path, *, image, phantom, affine, save):
    """One HCP-YA ``T1w/Diffusion`` folder (FSL b-vectors); returns the DWI path."""
    from ..core.gradients import bvecs_fsl_to_voxel

    folder.mkdir(parents=True, exist_ok=True)
    dwi = folder / "data.nii.gz"
    save(image, affine, dwi, dtype=np.int16)
    gtab = phantom.gtab
    _write_text(folder / "bvals", " ".join(str(int(round(b))) for b in gtab.bvals) + "\n")
    fsl = bvecs_fsl_to_voxel(gtab.bvecs, affine)  # the flip is its own inverse
    rows = [" ".join(f"{v:.6f}" for v in fsl[:, axis]) for axis in range(3)]
    _write_text(folder / "bvecs", "\n".join(rows) + "\n")
    save(phantom.brain_mask, affine, folder / "nodif_brain_mask.nii.gz", dtype=np.uint8)
    return dwi


def write_run(layout: str, root: Path, rel: Path, prefix: str, *, image, phantom, affine, save):
    """Write one run of a preprocessed layout; returns (DWI path, phantom, affine) as written."""
    if layout == "hcpya":
        folder = root / prefix.split("_")[0][len("sub-") :] / "T1w" / "Diffusion"
        dwi = write_hcp_run(folder, image=image, phantom=phantom, affine=affine, save=save)
        return dwi, phantom, affine
    phantom, affine = reorient(dataclasses.replace(phantom, signal=image), affine)
    (root / rel).mkdir(parents=True, exist_ok=True)
    space = "ACPC" if layout == "qsiprep" else "T1w"
    dwi = write_qsiprep_run(
        root / rel,
        prefix,
        space=space,
        image=phantom.signal,
        phantom=phantom,
        affine=affine,
        save=save,
    )
    return dwi, phantom, affine
