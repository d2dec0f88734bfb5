"""Report interfaces: each draws its figure from files in a Nipype node's folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from reports.fake_derivatives import write_fake_dataset

from rumba_bids.interfaces.reports import (
    FractionsReport,
    MaskReport,
    OdfGlyphReport,
    PeaksReport,
    ResponseReport,
    SnrReport,
)


@pytest.fixture(scope="module")
def fake_dataset(tmp_path_factory):
    return write_fake_dataset(tmp_path_factory.mktemp("report_interfaces"))


@pytest.fixture(scope="module")
def run_files(fake_dataset):
    folder = fake_dataset.output_dir / "sub-01" / "ses-2" / "dwi"
    raw = fake_dataset.bids_dir / "sub-01" / "ses-2" / "dwi"

    def param(name):
        return str(folder / f"sub-01_ses-2_model-rumba_param-{name}_dwimap.nii.gz")

    return {
        "fod": param("fod"),
        "peaks": param("peaks"),
        "peakvals": param("peakvals"),
        "gfa": param("gfa"),
        "fwm": param("fwm"),
        "fiso": param("fiso"),
        "fcsf": param("fcsf"),
        "snr": param("snr"),
        "mask": str(folder / "sub-01_ses-2_desc-brain_mask.nii.gz"),
        "response": str(folder / "sub-01_ses-2_model-rumba_response.json"),
        "dwi": str(raw / "sub-01_ses-2_dwi.nii.gz"),
        "bval": str(raw / "sub-01_ses-2_dwi.bval"),
    }


def _check(result, name):
    path = result.outputs.out_report
    assert path.endswith(f"_{name}.png") or f"desc-{name}_" in path
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    return path


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda f: MaskReport(mask_file=f["mask"], dwi_file=f["dwi"], bval_file=f["bval"]),
         "mask"),
        (lambda f: ResponseReport(response_file=f["response"], bval_file=f["bval"]), "response"),
        (lambda f: FractionsReport(f_wm=f["fwm"], f_iso=f["fiso"], f_csf=f["fcsf"],
                                   mask_file=f["mask"]), "fractions"),
        (lambda f: OdfGlyphReport(fod_sh=f["fod"], f_iso=f["fiso"], mask_file=f["mask"],
                                  peak_values=f["peakvals"]), "odfs"),
        (lambda f: PeaksReport(peaks_file=f["peaks"], gfa=f["gfa"], peak_values=f["peakvals"],
                               mask_file=f["mask"], axis="coronal", slice_index=9), "peaks"),
        (lambda f: SnrReport(snr=f["snr"]), "snr"),
    ],
)  # fmt: skip
def test_report_interface(run_files, tmp_path, monkeypatch, make, name):
    monkeypatch.chdir(tmp_path)
    interface = make(run_files)
    interface.inputs.label = "sub-01_ses-2"
    path = _check(interface.run(cwd=str(tmp_path)), name)
    assert path.startswith(str(tmp_path)) and "sub-01_ses-2" in path


def test_glyph_interface_with_a_region(run_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = OdfGlyphReport(
        fod_sh=run_files["fod"], axis="sagittal", slice_index=8, region=[4, 12, 3, 9]
    ).run(cwd=str(tmp_path))
    width, height = Image.open(result.outputs.out_report).size
    assert width > height - 35  # 8 x 6 voxels, wider than tall
    with pytest.raises(ValueError, match="outside the slice"):
        OdfGlyphReport(fod_sh=run_files["fod"], region=[0, 99, 0, 5]).run(cwd=str(tmp_path))
