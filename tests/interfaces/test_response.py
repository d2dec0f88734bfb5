"""EstimateResponse: every method on real and synthetic data, files, and bad inputs."""

import json
import re

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.core.kernel import AxisymmetricResponse
from rumba_bids.interfaces.errors import InputDataError, InputMissingError
from rumba_bids.interfaces.gradients import CheckGradients
from rumba_bids.interfaces.masking import BrainMask
from rumba_bids.interfaces.response import EstimateResponse, read_response


def _checked(files, tmp_path):
    (tmp_path / "check").mkdir(parents=True, exist_ok=True)
    outputs = (
        CheckGradients(
            dwi_file=files.dwi_file, bval_file=files.bval_file, bvec_file=files.bvec_file
        )
        .run(cwd=str(tmp_path / "check"))
        .outputs
    )
    return {
        "dwi_file": files.dwi_file,
        "bval_file": outputs.bval_file,
        "bvec_file": outputs.bvec_file,
    }


def _estimate(tmp_path, **inputs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return EstimateResponse(**inputs).run(cwd=str(tmp_path)).outputs


def test_default_response_and_override(tmp_path):
    outputs = _estimate(tmp_path, method="default")
    assert outputs.response["Type"] == "eigen"
    assert outputs.response["Values"] == [1.7e-3, 0.2e-3, 0.2e-3, 1.0]
    with open(outputs.response_file) as handle:
        assert json.load(handle)["Eigenvalues"] == [1.7e-3, 0.2e-3, 0.2e-3]
    lines = [line for line in open(outputs.response_txt) if not line.startswith("#")]
    np.testing.assert_allclose(np.loadtxt(lines), [1.7e-3, 0.2e-3, 0.2e-3, 1.0])
    custom = _estimate(tmp_path / "custom", method="default", wm_response=(1.5e-3, 3e-4, 3e-4))
    wm_response, sidecar = read_response(custom.response_file)
    assert wm_response == (1.5e-3, 3e-4, 3e-4)
    assert sidecar["Values"][:3] == [1.5e-3, 3e-4, 3e-4]


def test_fa_response_on_small_64d_matches_dipy(small_64d, tmp_path):
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.reconst.csdeconv import auto_response_ssst

    outputs = _estimate(tmp_path, method="fa", **_checked(small_64d, tmp_path))
    bvals, bvecs = read_bvals_bvecs(small_64d.bval_file, small_64d.bvec_file)
    bvecs[np.isnan(bvecs)] = 0
    data = nib.load(small_64d.dwi_file).get_fdata()
    (evals, s0), _ = auto_response_ssst(
        gradient_table(bvals, bvecs=bvecs), data, roi_radii=10, fa_thr=0.7
    )
    assert outputs.response["Method"] == "fa"
    np.testing.assert_allclose(outputs.response["Values"][:3], evals, rtol=1e-3)
    np.testing.assert_allclose(outputs.response["Values"][3], s0, rtol=1e-5)


def test_fa_response_on_synthetic_phantom_is_a_prolate_tensor(synthetic_dwi, tmp_path):
    outputs = _estimate(
        tmp_path,
        method="fa",
        mask_file=synthetic_dwi.mask_file,
        **_checked(synthetic_dwi, tmp_path),
    )
    l1, l2, l3, s0 = outputs.response["Values"]
    # 90 % fibre (1.7, 0.2, 0.2) + 10 % free water at b = 1000, SNR 30
    assert 1.5e-3 < l1 < 2.1e-3 and 1e-4 < l2 == l3 < 5e-4
    assert outputs.response["NVoxels"] == 27 and 900 < s0 < 1100


def test_recursive_response_is_usable_by_the_fit(small_64d, tmp_path):
    files = _checked(small_64d, tmp_path)
    mask = BrainMask(dwi_file=small_64d.dwi_file, bval_file=files["bval_file"]).run(
        cwd=str(tmp_path / "check")
    )
    outputs = _estimate(tmp_path, method="recursive", mask_file=mask.outputs.out_mask, **files)
    assert outputs.response["Type"] == "zsh" and outputs.response["Converged"]
    wm_response, _ = read_response(outputs.response_file)
    assert isinstance(wm_response, AxisymmetricResponse) and wm_response.sh_order == 8
    # the zonal coefficients of the text file, MRtrix3 style
    lines = [line for line in open(outputs.response_txt) if not line.startswith("#")]
    np.testing.assert_allclose(np.loadtxt(lines), wm_response.zonal_coefs, rtol=1e-7)
    # the response decreases away from its axis, like a fibre's signal
    along, across = wm_response.on_cosines(np.array([1.0, 0.0]))
    assert 0 < along < across < wm_response.S0


def test_unconverged_recursive_response_does_not_fail_the_run(small_64d, tmp_path, caplog):
    """The tutorial's 4 iterations do not converge on small_64D: recorded, not fatal."""
    files = _checked(small_64d, tmp_path)
    mask = BrainMask(dwi_file=small_64d.dwi_file, bval_file=files["bval_file"]).run(
        cwd=str(tmp_path / "check")
    )
    outputs = _estimate(
        tmp_path,
        method="recursive",
        mask_file=mask.outputs.out_mask,
        recursive_iterations=1,
        **files,
    )
    sidecar = json.loads(open(outputs.response_file).read())
    assert sidecar["Converged"] is False and sidecar["NIterations"] == 1
    assert sidecar["MaxRelativeChange"] > sidecar["Parameters"]["convergence"]
    assert outputs.response["Converged"] is False
    assert "did not converge in 1 iterations" in caplog.text
    wm_response, _ = read_response(outputs.response_file)
    assert isinstance(wm_response, AxisymmetricResponse)


def test_recursive_response_picks_an_sh_order_the_directions_support(synthetic_dwi, tmp_path):
    outputs = _estimate(
        tmp_path,
        method="recursive",
        mask_file=synthetic_dwi.mask_file,
        **_checked(synthetic_dwi, tmp_path),
    )
    assert outputs.response["Parameters"]["sh_order"] == 6  # 30 directions < 45 coefficients


def test_recursive_response_refuses_multishell_data(synthetic_multishell_dwi, tmp_path):
    files = _checked(synthetic_multishell_dwi, tmp_path)
    message = f"{synthetic_multishell_dwi.dwi_file}: the recursive response needs single-shell"
    with pytest.raises(InputDataError, match=re.escape(message)):
        _estimate(tmp_path, method="recursive", **files)


def test_per_shell_fa_response_on_multishell_data(synthetic_multishell_dwi, tmp_path):
    outputs = _estimate(
        tmp_path,
        method="fa",
        mask_file=synthetic_multishell_dwi.mask_file,
        **_checked(synthetic_multishell_dwi, tmp_path),
    )
    values = np.array(outputs.response["Values"])
    assert values.shape == (3, 4) and outputs.response["Shells"] == [1000.0, 2000.0, 3000.0]
    wm_response, _ = read_response(outputs.response_file)
    assert np.shape(wm_response) == (3, 3)


def test_no_voxel_above_the_fa_threshold_names_the_data(synthetic_dwi, tmp_path):
    expected = rf"{re.escape(synthetic_dwi.dwi_file)}: fa response: no voxel .* fa_thr=0.99"
    with pytest.raises(InputDataError, match=expected):
        _estimate(
            tmp_path,
            method="fa",
            fa_threshold=0.99,
            mask_file=synthetic_dwi.mask_file,
            **_checked(synthetic_dwi, tmp_path),
        )


def test_file_method_reads_json_and_text(synthetic_dwi, tmp_path):
    estimated = _estimate(
        tmp_path / "fa",
        method="fa",
        mask_file=synthetic_dwi.mask_file,
        **_checked(synthetic_dwi, tmp_path),
    )
    again = _estimate(tmp_path / "file", method="file", in_file=estimated.response_file)
    assert again.response == estimated.response
    text = tmp_path / "group_response.txt"
    text.write_text("0.0016 0.0003 0.0003 950\n")
    from_text = _estimate(tmp_path / "txt", method="file", in_file=str(text))
    assert from_text.response["Values"] == [0.0016, 0.0003, 0.0003, 950.0]


def test_bad_response_files_are_named(tmp_path):
    missing = str(tmp_path / "absent.json")
    with pytest.raises(
        InputMissingError, match=re.escape(f"{missing}: response file does not exist")
    ):
        _estimate(tmp_path, method="file", in_file=missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"Eigenvalues": [0.0017, 0.0002')
    with pytest.raises(InputDataError, match=re.escape(f"{broken}: not a response description")):
        _estimate(tmp_path, method="file", in_file=str(broken))
    five = tmp_path / "five.txt"
    five.write_text("1 2 3 4 5")
    with pytest.raises(InputDataError, match=re.escape(f"{five}: a text response holds 3")):
        _estimate(tmp_path, method="file", in_file=str(five))
    with pytest.raises(ValueError, match="method 'file' needs a response file"):
        _estimate(tmp_path, method="file")
    with pytest.raises(ValueError, match="method 'fa' needs dwi_file, bval_file and bvec_file"):
        _estimate(tmp_path, method="fa")
    with pytest.raises(ValueError, match="wm_response sets the default response; method 'fa'"):
        _estimate(tmp_path, method="fa", wm_response=(1.7e-3, 2e-4, 2e-4))


def test_file_method_refuses_a_response_of_other_shells(
    synthetic_dwi, synthetic_multishell_dwi, tmp_path
):
    """A b=1000 response on b=1000/2000/3000 data: refused, both shell sets named; on its
    own shells (and with the graph's checked gradients) it is accepted."""
    single = _checked(synthetic_dwi, tmp_path / "single")
    estimated = _estimate(
        tmp_path / "fa", method="fa", mask_file=synthetic_dwi.mask_file, **single
    )
    assert estimated.response["Shells"] == [1000.0]
    multi = _checked(synthetic_multishell_dwi, tmp_path / "multi")
    message = (
        f"{estimated.response_file}: the tensor response was estimated at b=1000 s/mm^2 "
        "but the data have b=1000/2000/3000 s/mm^2"
    )
    with pytest.raises(InputDataError, match=re.escape(message)):
        _estimate(tmp_path / "bad", method="file", in_file=estimated.response_file, **multi)
    again = _estimate(tmp_path / "good", method="file", in_file=estimated.response_file, **single)
    assert again.response["Shells"] == [1000.0]
