"""Bad inputs through the command line: each gets its documented exit code and one line
``rumba-bids: error: <file or option>: <problem>``, no traceback, nothing written in
bids_dir, and no output or work directory (so no partial derivative).

Every case is one parametrised test on the tiny one-subject dataset, run in-process
(``main([...])``); a few also run through the console script in a subprocess.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from .helpers import TINY_SHAPE, TINY_STEM, run_app, run_in_process, snapshot

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _image(bids: Path) -> Path:
    return bids / f"{TINY_STEM}.nii.gz"


def _bval(bids: Path) -> Path:
    return bids / f"{TINY_STEM}.bval"


def _bvec(bids: Path) -> Path:
    return bids / f"{TINY_STEM}.bvec"


def _rewrite(bids: Path, change, dtype=None) -> None:
    image = nib.load(str(_image(bids)))
    data = np.asanyarray(image.dataobj)
    data = change(data.astype(dtype or data.dtype))
    nib.save(nib.Nifti1Image(data, image.affine), str(_image(bids)))


def _bvec_rows(bids: Path) -> list[list[str]]:
    return [line.split() for line in _bvec(bids).read_text().splitlines()]


def _write_bvec_rows(bids: Path, rows) -> None:
    _bvec(bids).write_text("\n".join(" ".join(row) for row in rows) + "\n")


def _set_bvec(bids: Path, volume: int, values) -> None:
    rows = _bvec_rows(bids)
    for axis, value in enumerate(values):
        rows[axis][volume] = value
    _write_bvec_rows(bids, rows)


def _mask(tmp: Path, data, affine=AFFINE) -> list:
    path = tmp / "mask.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return ["--mask-file", path]


def _filters(tmp: Path, content: str) -> list:
    path = tmp / "filters.json"
    path.write_text(content)
    return ["--bids-filter-file", path]


def _scaling_overflow(bids: Path) -> None:
    image = nib.load(str(_image(bids)))
    scaled = nib.Nifti1Image(np.asanyarray(image.dataobj).astype(np.int16), image.affine)
    scaled.header.set_slope_inter(1e36, 0.0)
    nib.save(scaled, str(_image(bids)))


def _wraparound(bids: Path) -> None:
    """uint16 values above 32767 written as int16: they wrap to large negative values."""
    image = nib.load(str(_image(bids)))
    data = np.asanyarray(image.dataobj).astype(np.uint16) * 100
    nib.save(nib.Nifti1Image(data.astype(np.int16), image.affine), str(_image(bids)))


def _one_voxel(value):
    def change(data):
        data = data.astype(np.float32)
        data[3, 4, 5, 2] = value
        return data

    return change


def _drop_volume(data):
    data = data.copy()
    data[..., 5] = 0
    return data


QSIPREP_STEM = "sub-01/dwi/sub-01_space-ACPC_desc-preproc_dwi"


def _as_qsiprep(bids: Path, *, preproc: bool = True) -> None:
    """The tiny run as QSIPrep writes it: desc-preproc names, one b-value per line."""
    (bids / "dataset_description.json").write_text(
        '{"Name": "qsiprep output", "BIDSVersion": "1.1.1", '
        '"PipelineDescription": {"Name": "qsiprep", "Version": "0.21.4"}}'
    )
    if not preproc:
        return
    for extension in (".nii.gz", ".bval", ".bvec"):
        (bids / f"{TINY_STEM}{extension}").rename(bids / f"{QSIPREP_STEM}{extension}")
    bval = bids / f"{QSIPREP_STEM}.bval"
    bval.write_text("\n".join(bval.read_text().split()) + "\n")


def _qsiprep_mask_other_grid(bids: Path) -> None:
    _as_qsiprep(bids)
    mask = np.ones(TINY_SHAPE, np.uint8)
    nib.save(
        nib.Nifti1Image(mask, np.diag([2.5, 2.5, 2.5, 1.0])),
        str(bids / "sub-01/dwi/sub-01_space-ACPC_desc-brain_mask.nii.gz"),
    )


def _unknown_pipeline(bids: Path) -> None:
    (bids / "dataset_description.json").write_text(
        '{"Name": "x", "BIDSVersion": "1.10.0", "GeneratedBy": [{"Name": "mystery-prep"}]}'
    )


def _as_hcpya(bids: Path, *, bvecs: bool = True) -> None:
    """The tiny run as an HCP-YA subject folder (no dataset_description.json)."""
    (bids / "dataset_description.json").unlink()
    folder = bids / "100307" / "T1w" / "Diffusion"
    folder.mkdir(parents=True)
    _image(bids).rename(folder / "data.nii.gz")
    _bval(bids).rename(folder / "bvals")
    if bvecs:
        _bvec(bids).rename(folder / "bvecs")
    else:
        _bvec(bids).unlink()
    (bids / "sub-01" / "dwi").rmdir()
    (bids / "sub-01").rmdir()


#: (id, change(bids, tmp) -> extra arguments or None, exit code, message, where).
#: ``where`` is the file (relative to bids_dir, or "tmp/<name>") or option named by the line.
CASES = [
    # BIDS structure
    ("bids_dir_missing", "missing", 66, "bids_dir does not exist", "missing"),
    (
        "no_dataset_description",
        lambda b, t: (b / "dataset_description.json").unlink(),
        66,
        "dataset_description.json is missing",
        "bids",
    ),
    (
        "dataset_description_not_json",
        lambda b, t: (b / "dataset_description.json").write_text('{"Name": '),
        65,
        "is not valid JSON",
        "dataset_description.json",
    ),
    (
        "dataset_description_not_object",
        lambda b, t: (b / "dataset_description.json").write_text("[1, 2]"),
        65,
        "must hold a JSON object",
        "dataset_description.json",
    ),
    (
        "no_dwi_run",
        lambda b, t: _image(b).rename(b / "sub-01" / "dwi" / "sub-01_T2w.nii.gz"),
        18,
        "no DWI run",
        "bids",
    ),
    ("unknown_participant", ["--participant-label", "02"], 64, "unknown participant", "bids"),
    ("bval_missing", lambda b, t: _bval(b).unlink(), 66, "no .bval file", "sub-01_dwi.nii.gz"),
    (
        "bvec_misnamed",
        lambda b, t: _bvec(b).rename(str(_bvec(b)) + "s"),
        66,
        "no .bvec file",
        "sub-01_dwi.nii.gz",
    ),
    ("output_inside_bids", "inside", 64, "only bids_dir/derivatives/<name>", "bids/sub-01"),
    ("output_is_bids_dir", "same", 64, "must differ from bids_dir", "bids"),
    # gradient files
    (
        "bval_count",
        lambda b, t: _bval(b).write_text("0 1000 1000\n"),
        65,
        "3 b-values but sub-01_dwi.nii.gz has 8 volumes",
        "sub-01_dwi.bval",
    ),
    (
        "bvec_count",
        lambda b, t: _write_bvec_rows(b, [row[:5] for row in _bvec_rows(b)]),
        65,
        "5 b-vectors but sub-01_dwi.nii.gz has 8 volumes",
        "sub-01_dwi.bvec",
    ),
    (
        "bval_not_numeric",
        lambda b, t: _bval(b).write_text("0 1000 1000 b 0 1000 1000 1000\n"),
        65,
        "cannot parse the b-value file",
        "sub-01_dwi.bval",
    ),
    (
        "bval_nan",
        lambda b, t: _bval(b).write_text("0 1000 nan 1000 0 1000 1000 1000\n"),
        65,
        "b-value file holds NaN",
        "sub-01_dwi.bval",
    ),
    (
        "bvec_nan",
        lambda b, t: _set_bvec(b, 2, ["nan", "nan", "nan"]),
        65,
        "NaN or infinite values for 1 diffusion-weighted volume(s) (first: volume 2)",
        "sub-01_dwi.bvec",
    ),
    (
        "bvec_zero_norm",
        lambda b, t: _set_bvec(b, 3, ["0", "0", "0"]),
        65,
        "zero-length b-vector (first: volume 3, b=1000)",
        "sub-01_dwi.bvec",
    ),
    (
        "bvec_not_unit",
        lambda b, t: _set_bvec(b, 1, ["2", "0", "0"]),
        65,
        "not unit vectors",
        "sub-01_dwi.bvec",
    ),
    (
        "bvec_two_rows",
        lambda b, t: _write_bvec_rows(b, _bvec_rows(b)[:2]),
        65,
        "expected 3 rows of b-vectors",
        "sub-01_dwi.bvec",
    ),
    (
        "bvals_in_s_per_m2",
        lambda b, t: _bval(b).write_text("0 1e9 1e9 1e9 0 1e9 1e9 1e9\n"),
        65,
        "values above 1e5 look like s/m^2",
        "sub-01_dwi.bval",
    ),
    (
        "bvals_in_ms_per_um2",
        lambda b, t: _bval(b).write_text("0 1 1 1 0 1 1 1\n"),
        65,
        "no diffusion-weighted volume",
        "sub-01_dwi.bval",
    ),
    (
        "bval_negative",
        lambda b, t: _bval(b).write_text("0 -1000 1000 1000 0 1000 1000 1000\n"),
        65,
        "negative b-values",
        "sub-01_dwi.bval",
    ),
    (
        "no_b0",
        lambda b, t: _bval(b).write_text(" ".join(["1000"] * 8) + "\n"),
        65,
        "no b0 volume",
        "sub-01_dwi.bval",
    ),
    # images
    (
        "image_3d",
        lambda b, t: _rewrite(b, lambda d: d[..., 0]),
        65,
        "is a 3D image",
        "sub-01_dwi.nii.gz",
    ),
    (
        "image_5d",
        lambda b, t: _rewrite(b, lambda d: d[..., None]),
        65,
        "expected a 4D image",
        "sub-01_dwi.nii.gz",
    ),
    (
        "truncated_gzip",
        lambda b, t: _image(b).write_bytes(_image(b).read_bytes()[:4000]),
        65,
        "truncated or corrupt",
        "sub-01_dwi.nii.gz",
    ),
    (
        "not_nifti",
        lambda b, t: _image(b).write_bytes(gzip.compress(b"not an image\n" * 200)),
        65,
        "cannot read the NIfTI header",
        "sub-01_dwi.nii.gz",
    ),
    (
        "not_gzip",
        lambda b, t: _image(b).write_bytes(b"plain text, not gzip\n" * 40),
        65,
        "not a gzip file",
        "sub-01_dwi.nii.gz",
    ),
    (
        "scaling_overflow",
        lambda b, t: _scaling_overflow(b),
        65,
        "beyond the float32 range (scl_slope=1e+36",
        "sub-01_dwi.nii.gz",
    ),
    (
        "integer_wraparound",
        lambda b, t: _wraparound(b),
        65,
        "integers that overflowed their type (int16)",
        "sub-01_dwi.nii.gz",
    ),
    (
        "all_zero_image",
        lambda b, t: _rewrite(b, np.zeros_like),
        65,
        "the image is all zero",
        "sub-01_dwi.nii.gz",
    ),
    (
        "all_zero_volume",
        lambda b, t: _rewrite(b, _drop_volume),
        65,
        "1 volume(s) are all zero (volumes 5)",
        "sub-01_dwi.nii.gz",
    ),
    (
        "nan_voxel",
        lambda b, t: _rewrite(b, _one_voxel(np.nan)),
        65,
        "holds 1 NaN or infinite values",
        "sub-01_dwi.nii.gz",
    ),
    (
        "inf_voxel",
        lambda b, t: _rewrite(b, _one_voxel(np.inf)),
        65,
        "holds 1 NaN or infinite values",
        "sub-01_dwi.nii.gz",
    ),
    (
        "negative_values",
        lambda b, t: _rewrite(b, lambda d: d - 350, np.float32),
        65,
        "a diffusion magnitude image is non-negative",
        "sub-01_dwi.nii.gz",
    ),
    # masks
    (
        "mask_other_shape",
        lambda b, t: _mask(t, np.ones((10, 12, 8), np.uint8)),
        65,
        "does not match the DWI grid (12, 12, 8)",
        "tmp/mask.nii.gz",
    ),
    (
        "mask_other_affine",
        lambda b, t: _mask(t, np.ones(TINY_SHAPE, np.uint8), np.diag([2.5, 2.0, 2.0, 1.0])),
        65,
        "the mask is on another grid",
        "tmp/mask.nii.gz",
    ),
    (
        "mask_empty",
        lambda b, t: _mask(t, np.zeros(TINY_SHAPE, np.uint8)),
        65,
        "the brain mask is empty",
        "tmp/mask.nii.gz",
    ),
    (
        "mask_not_binary",
        lambda b, t: _mask(t, np.linspace(0, 1, np.prod(TINY_SHAPE)).reshape(TINY_SHAPE)),
        65,
        "the brain mask is not binary",
        "tmp/mask.nii.gz",
    ),
    (
        "mask_4d",
        lambda b, t: _mask(t, np.ones((*TINY_SHAPE, 2), np.uint8)),
        65,
        "does not match the DWI grid",
        "tmp/mask.nii.gz",
    ),
    (
        "mask_missing",
        ["--mask-file", "no_mask.nii.gz"],
        66,
        "--mask-file does not exist",
        "no_mask.nii.gz",
    ),
    ("mask_not_a_file", ["--mask-file", "/dev/zero"], 64, "not a regular file", "/dev/zero"),
    # options
    ("unknown_sphere", ["--sphere", "ico5"], 64, "invalid choice: 'ico5'", "--sphere"),
    ("n_iter_zero", ["--n-iter", "0"], 64, "must be a positive integer, got 0", "--n-iter"),
    ("tv_with_voxelwise_fit", ["--tv", "--fit", "voxelwise"], 64, "--tv needs --fit global", ""),
    (
        "response_file_without_file_method",
        ["--response", "fa", "--response-file", "r.json"],
        64,
        "--response-file needs --response file",
        "",
    ),
    ("n_coils_with_smf", ["--n-coils", "8"], 64, "--n-coils > 1 needs --recon-type sos", ""),
    ("odd_sh_order", ["--sh-order", "7"], 64, "--sh-order must be even", ""),
    ("omp_exceeds_nprocs", ["--omp-nthreads", "4"], 64, "cannot exceed --nprocs (1)", ""),
    ("mem_not_positive", ["--mem", "0"], 64, "must be positive", "--mem"),
    (
        "mem_too_small",
        ["--mem", "50MB"],
        64,
        "for the RUMBA-SD fit but --mem is 50 MB",
        "sub-01_dwi.nii.gz",
    ),
    # input layouts (QSIPrep, HCP-YA) and --input-type
    (
        "qsiprep_without_preproc_dwi",
        lambda b, t: _as_qsiprep(b, preproc=False),
        66,
        "QSIPrep dataset without any desc-preproc DWI series",
        "bids",
    ),
    (
        "qsiprep_bvec_missing",
        lambda b, t: (_as_qsiprep(b), (b / f"{QSIPREP_STEM}.bvec").unlink()),
        66,
        "no .bvec file for this run (expected",
        f"{QSIPREP_STEM}.nii.gz",
    ),
    (
        "qsiprep_bval_count",
        lambda b, t: (_as_qsiprep(b), (b / f"{QSIPREP_STEM}.bval").write_text("0\n1000\n1000\n")),
        65,
        "3 b-values but sub-01_space-ACPC_desc-preproc_dwi.nii.gz has 8 volumes",
        f"{QSIPREP_STEM}.bval",
    ),
    (
        "qsiprep_mask_other_grid",
        lambda b, t: _qsiprep_mask_other_grid(b),
        65,
        "the mask is on another grid",
        "sub-01/dwi/sub-01_space-ACPC_desc-brain_mask.nii.gz",
    ),
    (
        "hcpya_without_bvecs",
        lambda b, t: _as_hcpya(b, bvecs=False),
        66,
        "no .bvec file for this run (expected",
        "100307/T1w/Diffusion/data.nii.gz",
    ),
    (
        "input_type_qsiprep_on_raw_bids",
        ["--input-type", "qsiprep"],
        64,
        "--input-type qsiprep: dataset_description.json names no pipeline (raw dataset)",
        "bids",
    ),
    (
        "input_type_hcpya_on_raw_bids",
        ["--input-type", "hcpya"],
        64,
        "--input-type hcpya: no <subject>/T1w/Diffusion/ folder",
        "bids",
    ),
    (
        "input_type_bids_on_qsiprep",
        lambda b, t: (_as_qsiprep(b), ["--input-type", "bids"])[1],
        64,
        "names QSIPrep, whose .bvec hold image-axis vectors",
        "bids",
    ),
    (
        "unrecognised_pipeline_forced_as_qsiprep",
        lambda b, t: _unknown_pipeline(b) or ["--input-type", "qsiprep"],
        64,
        "names mystery-prep (derivative dataset), not QSIPrep",
        "bids",
    ),
    (
        "sh_order_beyond_the_sphere",
        ["--sh-order", "16", "--sphere", "repulsion100"],
        64,
        "--sh-order 16 needs 153 SH coefficients but the sphere repulsion100 has 50 distinct",
        "",
    ),
    # paths
    ("label_with_slash", ["--participant-label", "../01"], 64, "is not a BIDS label", ""),
    ("label_dot_dot", ["--participant-label", "sub-.."], 64, "is not a BIDS label", ""),
    ("session_with_slash", ["--session-label", "1/../2"], 64, "is not a BIDS label", ""),
    (
        "filter_value_traversal",
        lambda b, t: _filters(t, '{"dwi": {"acquisition": "../../etc"}}'),
        64,
        "not a BIDS entity value",
        "tmp/filters.json",
    ),
    (
        "filter_query_keyword",
        lambda b, t: _filters(t, '{"dwi": {"scope": "derivatives"}}'),
        64,
        "'scope' is not a BIDS entity name",
        "tmp/filters.json",
    ),
    (
        "filter_not_json",
        lambda b, t: _filters(t, '{"dwi": '),
        64,
        "is not valid JSON",
        "tmp/filters.json",
    ),
    ("work_dir_inside_bids", "work_inside", 64, "must not be inside bids_dir", "bids/work"),
]


def _arguments(case, bids: Path, tmp: Path) -> list:
    """The command line of ``case`` (after changing the dataset)."""
    change = case[1]
    out, work = tmp / "out", tmp / "work"
    extra = []
    if change == "missing":
        bids = tmp / "missing"
    elif change == "inside":
        out = bids / "sub-01" / "out"
    elif change == "same":
        out = bids
    elif change == "work_inside":
        work = bids / "work"
    elif callable(change):
        extra = change(bids, tmp)
        extra = extra if isinstance(extra, list) else []
    else:
        extra = list(change)
    base = [bids, out, "participant", "--skip-bids-validation", "-w", work, "--nprocs", "1"]
    return [*base, *extra]


def _check(case, code, stderr, tmp: Path, bids: Path, before: dict) -> None:
    _, _, expected_code, message, where = case
    assert code == expected_code, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rumba-bids: error:")]
    assert len(errors) == 1, stderr
    assert message in errors[0], errors[0]
    named = where.replace("tmp/", str(tmp) + "/").replace("bids", str(bids), 1)
    assert named in errors[0], (named, errors[0])
    if bids.exists():
        assert snapshot(bids) == before, "bids_dir changed"
    assert not (tmp / "out").exists() and not (tmp / "work").exists()
    assert not (bids / "sub-01" / "out").exists() and not (bids / "work").exists()


def test_the_matrix_has_every_category():
    assert len(CASES) >= 25 and len({case[0] for case in CASES}) == len(CASES)
    assert {case[2] for case in CASES} == {18, 64, 65, 66}


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input(case, tiny_bids, tmp_path, monkeypatch):
    before = snapshot(tiny_bids)
    args = _arguments(case, tiny_bids, tmp_path)
    before = snapshot(tiny_bids) if case[1] != "missing" else before
    code, stderr = run_in_process(args, monkeypatch)
    _check(case, code, stderr, tmp_path, tiny_bids, before)


SUBPROCESS_CASES = ["bval_count", "truncated_gzip", "mask_not_binary", "mem_too_small"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_through_the_console_script(name, tiny_bids, tmp_path):
    """The same, from a real process: no traceback reaches the console."""
    (case,) = [case for case in CASES if case[0] == name]
    args = _arguments(case, tiny_bids, tmp_path)
    before = snapshot(tiny_bids)
    completed = run_app(*args)
    _check(case, completed.returncode, completed.stderr, tmp_path, tiny_bids, before)


def test_small_negative_values_are_accepted_with_a_warning(tiny_bids, tmp_path, monkeypatch):
    """Interpolation undershoots (a few small negative values) are not an error: the
    pre-flight passes them (here the run then stops at the --mem check, before any work)."""
    _rewrite(tiny_bids, _one_voxel(-5.0))
    args = _arguments(("x", ["--mem", "50MB"], 0, "", ""), tiny_bids, tmp_path)
    code, stderr = run_in_process(args, monkeypatch)
    assert code == 64 and "1 small negative values (down to -5)" in stderr


def test_nan_b_vectors_of_b0_volumes_are_accepted(tiny_bids, tmp_path, monkeypatch):
    """Some converters write NaN b-vectors for b0 volumes: the fit ignores them."""
    _set_bvec(tiny_bids, 0, ["nan", "nan", "nan"])
    args = _arguments(("x", ["--mem", "50MB"], 0, "", ""), tiny_bids, tmp_path)
    code, stderr = run_in_process(args, monkeypatch)
    assert code == 64 and "needs at least" in stderr


def test_every_selected_run_reported_when_all_are_invalid(tiny_bids, tmp_path, monkeypatch):
    """Two invalid runs: one line each, then one summary line; the first run's code."""
    second = tiny_bids / "sub-02" / "dwi"
    second.mkdir(parents=True)
    for path in (tiny_bids / "sub-01" / "dwi").iterdir():
        (second / path.name.replace("sub-01", "sub-02")).write_bytes(path.read_bytes())
    _bval(tiny_bids).write_text("0 1000\n")
    (second / "sub-02_dwi.bvec").write_text("1 0\n0 1\n")
    code, stderr = run_in_process(_arguments(("x", [], 0, "", ""), tiny_bids, tmp_path),
                                  monkeypatch)  # fmt: skip
    errors = [line for line in stderr.splitlines() if line.startswith("rumba-bids: error:")]
    assert code == 65 and len(errors) == 3, stderr
    assert "sub-01_dwi.bval" in errors[0] and "sub-02_dwi.bvec" in errors[1]
    assert "none of the 2 selected DWI runs can be processed" in errors[2]
    assert not (tmp_path / "out").exists()
