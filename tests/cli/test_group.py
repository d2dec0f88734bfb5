"""Group level: averaging response functions."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from rumba_bids.cli.errors import DataError, InputMissingError
from rumba_bids.cli.group import GROUP_RESPONSE, average_responses, run_group
from rumba_bids.core.response import ResponseEstimate


def eigen(l1, l2, s0, n):
    return ResponseEstimate(method="fa", evals=[l1, l2, l2], S0=s0, n_voxels=n, ratio=l2 / l1)


def test_average_of_tensors():
    average = average_responses([eigen(1.6e-3, 0.3e-3, 900, 10), eigen(1.8e-3, 0.4e-3, 1100, 30)])
    np.testing.assert_allclose(average.evals, [1.7e-3, 0.35e-3, 0.35e-3])
    assert average.S0 == 1000 and average.n_voxels == 40 and average.method == "fa"


def test_zonal_responses_are_averaged_in_relative_units():
    first = ResponseEstimate(
        method="recursive",
        evals=[1.7e-3, 2e-4, 2e-4],
        S0=100.0,
        shells=(2000.0,),
        zonal_coefs=[50.0, -10.0],
        n_voxels=5,
    )
    second = ResponseEstimate(
        method="recursive",
        evals=[1.7e-3, 2e-4, 2e-4],
        S0=300.0,
        shells=(2000.0,),
        zonal_coefs=[150.0, -30.0],
        n_voxels=5,
    )
    average = average_responses([first, second])
    np.testing.assert_allclose(average.zonal_coefs, [100.0, -20.0])  # 200 * (0.5, -0.1)
    assert average.S0 == 200.0


def test_incompatible_responses_are_refused():
    per_shell = ResponseEstimate(
        method="fa", evals=[[1.7e-3, 2e-4, 2e-4]] * 2, shells=(1000.0, 2000.0)
    )
    with pytest.raises(ValueError, match="different kinds"):
        average_responses([eigen(1.7e-3, 2e-4, 1, 1), per_shell])


def write(out, rel, estimate):
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(estimate.to_dict()))


def settings(out, **kwargs):
    return SimpleNamespace(
        output_dir=out,
        participant_label=kwargs.get("participant_label", ()),
        session_label=kwargs.get("session_label", ()),
    )


def test_run_group_writes_a_file_the_app_can_read(tmp_path):
    out = tmp_path / "out"
    write(
        out,
        "sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_response.json",
        eigen(1.6e-3, 3e-4, 900, 10),
    )
    write(out, "sub-02/dwi/sub-02_model-rumba_response.json", eigen(1.8e-3, 3e-4, 1100, 10))
    write(out, "sub-03/dwi/sub-03_model-rumba_response.json", eigen(9e-3, 3e-4, 1100, 10))
    assert run_group(settings(out, participant_label=("01", "02"))) == 0
    content = json.loads((out / GROUP_RESPONSE).read_text())
    assert content["NRuns"] == 2
    assert content["Sources"] == [
        "bids::sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_response.json",
        "bids::sub-02/dwi/sub-02_model-rumba_response.json",
    ]
    again = ResponseEstimate.from_dict(content)
    np.testing.assert_allclose(again.evals, [1.7e-3, 3e-4, 3e-4])


def test_run_group_errors(tmp_path):
    with pytest.raises(InputMissingError, match="run the participant level first"):
        run_group(settings(tmp_path / "none"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputMissingError, match="no \\*_model-rumba_response.json"):
        run_group(settings(out))
    bad = out / "sub-01/dwi/sub-01_model-rumba_response.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"Type": "eigen"}')
    with pytest.raises(DataError, match="not a response file"):
        run_group(settings(out))


def tensor_at(shells, l1=1.7e-3):
    return ResponseEstimate(
        method="fa", evals=[l1, 2e-4, 2e-4], S0=1000.0, n_voxels=10, ratio=2e-4 / l1,
        shells=shells,
    )  # fmt: skip


def zsh_at(shell, c0=50.0):
    return ResponseEstimate(
        method="recursive", evals=[1.7e-3, 2e-4, 2e-4], S0=100.0, n_voxels=5,
        shells=(shell,), zonal_coefs=[c0, -10.0],
    )  # fmt: skip


def test_responses_from_different_shells_are_never_averaged():
    with pytest.raises(ValueError, match="different kinds or shells.*b=1000.*b=2000"):
        average_responses([zsh_at(1000.0), zsh_at(2000.0)])
    with pytest.raises(ValueError, match="different kinds or shells"):
        average_responses([tensor_at((1000.0,)), tensor_at((2000.0,))])
    # within the shell tolerance (20 s/mm^2) the shells are the same
    average = average_responses([zsh_at(1000.0, 40.0), zsh_at(1010.0, 60.0)])
    assert average.shells == (1005.0,)
    np.testing.assert_allclose(average.zonal_coefs, [50.0, -10.0])


def test_run_group_writes_one_file_per_kind_and_shell_set(tmp_path):
    out = tmp_path / "out"
    runs = {
        "sub-01/ses-1/dwi/sub-01_ses-1": zsh_at(1000.0, 40.0),
        "sub-01/ses-2/dwi/sub-01_ses-2": zsh_at(1000.0, 60.0),
        "sub-02/dwi/sub-02": zsh_at(3000.0),
        "sub-03/dwi/sub-03": tensor_at((3000.0,)),
        "sub-04/dwi/sub-04": tensor_at((1000.0, 2000.0)),
        "sub-05/dwi/sub-05": tensor_at(None),  # an old file: no shells recorded
    }
    for stem, estimate in runs.items():
        write(out, f"{stem}_model-rumba_response.json", estimate)
    assert run_group(settings(out)) == 0
    written = sorted(path.name for path in out.glob("*group_response.json"))
    assert written == [
        f"acq-{label}_{GROUP_RESPONSE}"
        for label in ("tensorb1000b2000", "tensorb3000", "tensornoshells", "zshb1000", "zshb3000")
    ]
    content = json.loads((out / f"acq-zshb1000_{GROUP_RESPONSE}").read_text())
    assert content["NRuns"] == 2 and content["Shells"] == [1000.0]
    np.testing.assert_allclose(content["ZonalCoefficients"], [50.0, -10.0])
    assert "Shells" not in json.loads((out / f"acq-tensornoshells_{GROUP_RESPONSE}").read_text())
