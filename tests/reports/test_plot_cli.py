"""``rumba-bids-plot``: figures from output files for a chosen slice and region."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rumba_bids.reports.plot_cli import main


def _fod(fake_dataset, session="2"):
    return next(fake_dataset.output_dir.glob(f"sub-01/ses-{session}/dwi/*param-fod_dwimap.nii.gz"))


def test_glyphs_of_a_chosen_slice_and_region(fake_dataset, tmp_path, capsys):
    out = tmp_path / "glyphs.png"
    code = main([str(_fod(fake_dataset)), "--axis", "coronal", "--slice", "10",
                 "--region", "3:15,2:14", "-o", str(out)])  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    image = Image.open(out)
    # 12 x 12 voxels of 2 mm: a square panel under a title strip
    assert image.size[0] == image.size[1] - 35
    assert len(np.unique(np.asarray(image.convert("L")))) > 50
    assert list(tmp_path.iterdir()) == [out]


def test_every_figure_of_a_subject_into_a_folder_with_the_page(fake_dataset, tmp_path, capsys):
    folder = tmp_path / "figs"
    code = main([str(fake_dataset.output_dir), "--participant-label", "sub-01", "--session-label",
                 "1", "--figure", "all", "--format", "svg", "-o", str(folder)])  # fmt: skip
    assert code == 0
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) == 6 and all(name.startswith("sub-01_ses-1_") for name in written)
    assert all(name.endswith(".svg") for name in written)
    assert "sub-01_ses-1_model-rumba_desc-odfs_dwimap.svg" in written
    del capsys


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["--slice", "99"], 64, "slice 99 is outside the image"),
        (["--region", "1:2"], 64, "region must look like"),
        (["--sphere", "moon"], 64, "unknown sphere 'moon'"),
        (["--figure", "odfs", "snr", "-o", "x.png"], 64, "names one file but 1 run(s) x 2"),
        (["--axis", "oblique"], 64, "invalid choice: 'oblique'"),
    ],
)
def test_usage_errors(fake_dataset, tmp_path, capsys, arguments, code, message):
    assert main([str(_fod(fake_dataset)), *arguments]) == code
    assert message in capsys.readouterr().err
    del tmp_path


def test_missing_inputs(fake_dataset, tmp_path, capsys):
    assert main([str(tmp_path / "nothing.nii.gz")]) == 66
    assert "no such file or folder" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 66
    assert "no rumba-bids fODF output" in capsys.readouterr().err
    stray = tmp_path / "notes.txt"
    stray.write_text("x")
    assert main([str(stray)]) == 64
    assert "not a rumba-bids output file" in capsys.readouterr().err
