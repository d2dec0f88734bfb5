"""``rumba-bids-demo``: write a small BIDS dataset made from the synthetic head phantom.

Layout (defaults: 2 subjects, 2 sessions)::

    DIR/dataset_description.json, README, CHANGES, participants.tsv/.json
    DIR/sub-01/ses-{1,2}/dwi/sub-01_ses-<s>_dwi.{nii.gz,bval,bvec,json}   single shell
    DIR/sub-02/dwi/sub-02_dwi.{nii.gz,bval,bvec,json}                   three shells
    DIR/derivatives/groundtruth/                                         ground truth

Odd-numbered subjects are single-shell (b=2000, 10 b0 + 64 directions) with
``--sessions`` sessions and an RAS+ affine; even-numbered subjects are
multi-shell (b=1000/2000/3000, 10 b0 + 90 directions), have no session level
and an LAS affine (negative determinant), so both b-vector conventions of the
FSL format are exercised.  Sessions of one subject share the anatomy and differ
in noise; subjects differ slightly in head size.

``--layout qsiprep|qsiprep-legacy|hcpya`` writes the same phantom the way QSIPrep
(>= 0.24, or 0.19-0.23) and the HCP-YA minimal preprocessing write their outputs
(see :mod:`rumba_bids.cli.demo_layouts`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .. import __version__
from .errors import CannotCreateOutputError, ExitCode, RumbaBidsError, UsageError

PROG = "rumba-bids-demo"
BIDS_VERSION = "1.10.0"
VOXEL_SIZE_MM = 2.5
REPETITION_TIME = 3.5
SINGLE_SHELL = {"bvals": (2000.0,), "n_dirs": 64}
MULTI_SHELL = {"bvals": (1000.0, 2000.0, 3000.0), "n_dirs": 90}
logger = logging.getLogger("rumba_bids.demo")

DWI_SIDECAR = {
    "PhaseEncodingDirection": "j-",
    "TotalReadoutTime": 0.05,
    "EchoTime": 0.08,
    "RepetitionTime": REPETITION_TIME,
    "MagneticFieldStrength": 3,
}

README_TEXT = """\
# rumba-bids demo dataset

Synthetic diffusion MRI of a head phantom, written by `rumba-bids-demo`
(rumba-bids {version}, seed {seed}).

Every image is simulated: a brain-shaped ellipsoid inside a skull and scalp, in
background noise, with a grey-matter-like cortical rim, CSF-like ventricles and
white matter made of fibre bundles (single-fibre regions and 2- and 3-fibre
crossings), a smooth coil gain field and Rician noise (SNR {snr:g} at b=0 in
white matter).

Odd-numbered subjects: one shell at b=2000 s/mm^2 (10 b0 + 64 directions),
sessions `ses-1` ... . Even-numbered subjects: three shells at b=1000, 2000 and
3000 s/mm^2 (10 b0 + 90 directions), no session level.

The ground truth (fibre directions in the voxel frame, fibre and tissue
fractions, brain mask, tissue labels) is in `derivatives/groundtruth/`.
"""


def _affine(shape, *, flip_x: bool):
    import numpy as np

    affine = np.diag([VOXEL_SIZE_MM, VOXEL_SIZE_MM, VOXEL_SIZE_MM, 1.0])
    affine[:3, 3] = -VOXEL_SIZE_MM * (np.asarray(shape) - 1) / 2.0
    if flip_x:
        affine[0, 0] = -VOXEL_SIZE_MM
        affine[0, 3] = -affine[0, 3]
    return affine


def _save_nifti(array, affine, path: Path, *, dtype, tr: float | None = None):
    import nibabel as nib
    import numpy as np

    img = nib.Nifti1Image(np.asarray(array).astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if tr is not None:
        zooms = img.header.get_zooms()
        img.header.set_zooms(zooms[:3] + (tr,))
    nib.save(img, str(path))


def _write_json(path: Path, content) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def _write_gradients(stem: Path, bvals, bvecs_fsl) -> None:
    stem.with_name(stem.name + ".bval").write_text(
        " ".join(str(int(round(b))) for b in bvals) + "\n"
    )
    rows = [" ".join(f"{value:.6f}" for value in bvecs_fsl[:, axis]) for axis in range(3)]
    stem.with_name(stem.name + ".bvec").write_text("\n".join(rows) + "\n")


def _ground_truth(phantom, prefix: str, gt_dir: Path, affine, *, seed_info: dict) -> None:
    import numpy as np

    described = {
        "Model": {
            "Description": "Ground truth of the rumba-bids synthetic head phantom",
            "Parameters": {
                "FibreEigenvalues": [1.7e-3, 0.2e-3, 0.2e-3],
                "GreyMatterDiffusivity": 0.8e-3,
                "CSFDiffusivity": 3.0e-3,
                "SNR": phantom.snr,
                **seed_info,
            },
        },
    }
    directions = phantom.fibre_directions.reshape(phantom.fibre_directions.shape[:3] + (9,))
    maps = {
        "peaks": (
            directions,
            np.float32,
            {
                "Description": "Unit fibre directions, 3 volumes per fibre (NaN where absent)",
                "OrientationEncoding": {
                    "Type": "3vector",
                    "Reference": "ijk",
                    "FillValue": "NaN",
                },
            },
        ),
        "peakvals": (
            phantom.fibre_fractions,
            np.float32,
            {"Description": "Signal fraction of each fibre (sums to param-fwm)"},
        ),
        "nfibers": (phantom.n_fibres, np.uint8, {"Description": "Number of fibres"}),
        "fwm": (phantom.f_wm, np.float32, {"Description": "White matter signal fraction"}),
        "fgm": (phantom.f_gm, np.float32, {"Description": "Grey matter signal fraction"}),
        "fcsf": (phantom.f_csf, np.float32, {"Description": "CSF signal fraction"}),
    }
    for param, (array, dtype, extra) in maps.items():
        stem = gt_dir / f"{prefix}_model-groundtruth_param-{param}_dwimap"
        _save_nifti(array, affine, stem.with_suffix(".nii.gz"), dtype=dtype)
        _write_json(stem.with_suffix(".json"), {**described, **extra})
    _save_nifti(
        phantom.brain_mask, affine, gt_dir / f"{prefix}_desc-brain_mask.nii.gz", dtype=np.uint8
    )
    _save_nifti(
        phantom.tissue, affine, gt_dir / f"{prefix}_desc-tissue_dseg.nii.gz", dtype=np.uint8
    )


def _runs(n_subjects: int, n_sessions: int):
    """(subject, session or None, multi_shell) for every run of the dataset."""
    for subject in range(1, n_subjects + 1):
        multi_shell = subject % 2 == 0
        if multi_shell or n_sessions == 1:
            yield subject, None, multi_shell
        else:
            for session in range(1, n_sessions + 1):
                yield subject, session, multi_shell


def make_demo_dataset(
    bids_dir,
    *,
    n_subjects: int = 2,
    n_sessions: int = 2,
    seed: int = 0,
    shape=None,
    snr: float = 30.0,
    layout: str = "bids",
) -> list[Path]:
    """Write the demo dataset; return the DWI NIfTI files written.

    Parameters
    ----------
    bids_dir : path
        Must not exist or be an empty directory.
    n_subjects, n_sessions : int
        See the module docstring.
    seed : int
        Seeds the noise and the per-subject head sizes.
    shape : tuple of 3 int, optional
        Grid size (default :data:`rumba_bids.core.head_phantom.DEFAULT_SHAPE`).
    snr : float
        b0 SNR of brain tissue.
    layout : {'bids', 'qsiprep', 'qsiprep-legacy', 'hcpya'}
        Raw BIDS, or the phantom written as a pipeline writes its outputs (see
        :mod:`rumba_bids.cli.demo_layouts`; HCP-YA trees have no sessions).
    """
    import numpy as np

    from ..core.gradients import bvecs_fsl_to_voxel
    from ..core.head_phantom import (
        DEFAULT_SHAPE,
        TISSUE_LABELS,
        default_semi_axes,
        demo_gradient_table,
        make_head_phantom,
    )
    from . import demo_layouts

    if layout not in demo_layouts.LAYOUTS:
        raise UsageError(f"--layout must be one of {', '.join(demo_layouts.LAYOUTS)}")
    if layout == "hcpya":
        n_sessions = 1
    if n_subjects < 1 or n_sessions < 1:
        raise UsageError("--subjects and --sessions must be at least 1")
    if snr <= 0:
        raise UsageError(f"--snr must be positive, got {snr}")
    shape = tuple(DEFAULT_SHAPE if shape is None else shape)
    if len(shape) != 3 or min(shape) < 16:
        raise UsageError(f"--shape needs 3 sizes of at least 16 voxels, got {list(shape)}")
    bids_dir = Path(bids_dir).absolute()
    if bids_dir.exists() and (not bids_dir.is_dir() or any(bids_dir.iterdir())):
        raise CannotCreateOutputError("exists and is not an empty directory", path=bids_dir)
    try:
        bids_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CannotCreateOutputError(
            f"cannot create directory ({error.strerror})", path=bids_dir
        ) from error

    gt_root = bids_dir / "derivatives" / "groundtruth"
    gt_root.mkdir(parents=True)
    root = demo_layouts.data_root(bids_dir, layout)
    root.mkdir(parents=True, exist_ok=True)
    if layout == "bids":
        _write_json(
            bids_dir / "dataset_description.json",
            {
                "Name": "rumba-bids synthetic head phantom",
                "BIDSVersion": BIDS_VERSION,
                "DatasetType": "raw",
                "License": "CC0",
                "Authors": ["rumba-bids developers"],
                "GeneratedBy": [{"Name": PROG, "Version": __version__}],
            },
        )
        (bids_dir / "README.md").write_text(
            README_TEXT.format(version=__version__, seed=seed, snr=snr)
        )
        (bids_dir / "CHANGES").write_text(f"1.0.0 -\n  - Generated by {PROG} {__version__}.\n")
    else:
        description = demo_layouts.dataset_description(
            layout, bids_version=BIDS_VERSION, version=__version__
        )
        if description is not None:
            _write_json(root / "dataset_description.json", description)
    _write_json(
        gt_root / "dataset_description.json",
        {
            "Name": "Ground truth of the rumba-bids synthetic head phantom",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": PROG, "Version": __version__}],
            "SourceDatasets": [{"URL": "bids::"}],
        },
    )
    _write_json(
        gt_root / "desc-tissue_dseg.json",
        {"Description": "Dominant tissue of each voxel"},
    )
    (gt_root / "desc-tissue_dseg.tsv").write_text(
        "index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in TISSUE_LABELS.items())
    )

    participants = ["participant_id\tacquisition"]
    written = []
    for subject, session, multi_shell in _runs(n_subjects, n_sessions):
        label = f"sub-{demo_layouts.subject_label(layout, subject)}"
        if session == 1 or session is None:
            participants.append(f"{label}\t{'multi-shell' if multi_shell else 'single-shell'}")
        protocol = MULTI_SHELL if multi_shell else SINGLE_SHELL
        gtab = demo_gradient_table(n_b0=10, n_dirs=protocol["n_dirs"], bvals=protocol["bvals"])
        head_scale = 1.0 - 0.04 * ((subject - 1) % 3)
        semi_axes = tuple(a * head_scale for a in default_semi_axes(shape))
        rng = np.random.default_rng([seed, subject, session or 0])
        phantom = make_head_phantom(gtab, shape=shape, semi_axes=semi_axes, snr=snr, rng=rng)
        affine = _affine(shape, flip_x=multi_shell)
        rel = Path(label) / (f"ses-{session}" if session else "") / "dwi"
        prefix = label + (f"_ses-{session}" if session else "")
        image = np.clip(np.round(phantom.signal), 0, np.iinfo(np.int16).max)
        if layout == "bids":
            (bids_dir / rel).mkdir(parents=True, exist_ok=True)
            stem = bids_dir / rel / f"{prefix}_dwi"
            dwi = stem.with_name(stem.name + ".nii.gz")
            _save_nifti(image, affine, dwi, dtype=np.int16, tr=REPETITION_TIME)
            _write_gradients(stem, gtab.bvals, bvecs_fsl_to_voxel(gtab.bvecs, affine))
            _write_json(stem.with_name(stem.name + ".json"), DWI_SIDECAR)
        else:
            dwi, phantom, affine = demo_layouts.write_run(
                layout,
                root,
                rel,
                prefix,
                image=image,
                phantom=phantom,
                affine=affine,
                save=_save_nifti,
            )
        (gt_root / rel).mkdir(parents=True, exist_ok=True)
        _ground_truth(
            phantom,
            prefix,
            gt_root / rel,
            affine,
            seed_info={"Seed": [seed, subject, session or 0]},
        )
        written.append(dwi)
        logger.info("wrote %s", dwi.relative_to(bids_dir))
    if layout != "bids":
        return written
    (bids_dir / "participants.tsv").write_text("\n".join(participants) + "\n")
    _write_json(
        bids_dir / "participants.json",
        {
            "acquisition": {
                "Description": "Diffusion protocol of the participant",
                "Levels": {
                    "single-shell": "b=2000 s/mm^2, 10 b0 + 64 directions",
                    "multi-shell": "b=1000/2000/3000 s/mm^2, 10 b0 + 90 directions",
                },
            }
        },
    )
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Write a small BIDS diffusion dataset simulated from a synthetic head phantom "
            "(ground truth under DIR/derivatives/groundtruth/), ready for rumba-bids."
        ),
        epilog="example:\n  rumba-bids-demo demo && rumba-bids demo out participant",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bids_dir", metavar="DIR", help="directory to create (must be empty)")
    parser.add_argument(
        "--subjects", type=int, default=2, metavar="N", help="number of subjects (default 2)"
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=2,
        metavar="M",
        help="sessions of each single-shell (odd-numbered) subject (default 2; 1: no ses- level)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="image grid in voxels (default 40 48 34, 2.5 mm voxels)",
    )
    parser.add_argument(
        "--snr", type=float, default=30.0, help="b0 signal-to-noise ratio (default 30)"
    )
    parser.add_argument(
        "--layout",
        choices=("bids", "qsiprep", "qsiprep-legacy", "hcpya"),
        default="bids",
        help="bids: raw BIDS (default); qsiprep: QSIPrep >= 0.24 outputs (space-ACPC, LPS+, "
        "image-axis .bvec); qsiprep-legacy: QSIPrep 0.19-0.23 (DIR/qsiprep/, space-T1w, "
        "PipelineDescription only); hcpya: HCP-YA <subject>/T1w/Diffusion/ trees (no sessions)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class _UsageExit(Exception):
    pass


def main(argv=None) -> int:
    """Entry point of ``rumba-bids-demo``; returns the exit code."""
    parser = build_parser()

    def error(message):
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise _UsageExit

    parser.error = error
    try:
        args = parser.parse_args(argv)
    except _UsageExit:
        return int(ExitCode.USAGE)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = make_demo_dataset(
            args.bids_dir,
            n_subjects=args.subjects,
            n_sessions=args.sessions,
            seed=args.seed,
            shape=args.shape,
            snr=args.snr,
            layout=args.layout,
        )
    except RumbaBidsError as error_:
        print(error_.one_line(PROG), file=sys.stderr)
        return int(error_.exit_code)
    root = Path(args.bids_dir)
    print(
        f"{PROG}: wrote {len(written)} DWI runs to {root} "
        f"(ground truth in {root / 'derivatives' / 'groundtruth'})"
    )
    return int(ExitCode.SUCCESS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
