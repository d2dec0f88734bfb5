"""``--response file``: a response from other shells is refused before anything runs.

The demo dataset: sub-01 is single-shell (b=2000, two sessions), sub-02 has three
shells (b=1000/2000/3000).
"""

import json

import pytest
from robustness.helpers import run_in_process  # tests/ is on sys.path (its conftest.py)

from rumba_bids.core.response import ResponseEstimate

TENSOR = [1.7e-3, 2e-4, 2e-4]


def snapshot(root):
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def _response(tmp_path, **fields):
    path = tmp_path / "response.json"
    path.write_text(json.dumps(ResponseEstimate(**fields).to_dict()))
    return path


CASES = [
    (
        "tensor_b2000_on_three_shells",
        {"method": "fa", "evals": TENSOR, "shells": (2000.0,)},
        "02",
        "the tensor response was estimated at b=2000 s/mm^2 but the data have "
        "b=1000/2000/3000 s/mm^2",
    ),
    (
        "zonal_b1000_on_b2000",
        {"method": "recursive", "evals": TENSOR, "S0": 900.0, "zonal_coefs": [80.0, -20.0],
         "shells": (1000.0,)},
        "01/1",
        "the zonal-SH response was estimated at b=1000 s/mm^2 but the data have b=2000 s/mm^2",
    ),
    (
        "old_zonal_file_without_shells",
        {"method": "recursive", "evals": TENSOR, "S0": 900.0, "zonal_coefs": [80.0, -20.0]},
        "01/1",
        "this zonal-SH response records no shells ('Shells')",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "label", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_response_of_other_shells_is_refused_before_processing(
    demo_copy, tmp_path, monkeypatch, fields, label, message
):
    response = _response(tmp_path, **fields)
    before = snapshot(demo_copy)
    out, work = tmp_path / "out", tmp_path / "work"
    label, _, session = label.partition("/")
    selection = ["--participant-label", label] + (["--session-label", session] if session else [])
    code, stderr = run_in_process(
        [demo_copy, out, "participant", *selection, "--skip-bids-validation",
         "--response", "file", "--response-file", response, "-w", work, "--n-iter", "5"],
        monkeypatch,
    )  # fmt: skip
    assert code == 65, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rumba-bids: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert errors[0].startswith(f"rumba-bids: error: {response}: ")
    assert message in errors[0], errors[0]
    assert f"(data: sub-{label}" in errors[0]
    assert not out.exists() and not work.exists()
    assert snapshot(demo_copy) == before


def test_old_tensor_file_without_shells_is_accepted(demo_copy, tmp_path, monkeypatch):
    """A tensor is b-independent by construction: a file without 'Shells' still applies."""
    response = _response(tmp_path, method="file", evals=TENSOR)
    out = tmp_path / "out"
    code, stderr = run_in_process(
        [demo_copy, out, "participant", "--participant-label", "01", "--session-label", "1",
         "--skip-bids-validation", "--response-file", response, "-w", tmp_path / "work",
         "--n-iter", "5", "--nprocs", "1"],
        monkeypatch,
    )  # fmt: skip
    assert code == 0, stderr
    fod = json.loads(
        (out / "sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_param-fod_dwimap.json").read_text()
    )
    assert fod["ResponseFunction"]["Values"][:3] == TENSOR
