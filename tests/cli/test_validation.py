"""BIDS validation with bids-validator-deno (offline)."""

import pytest

from rumba_bids.cli.errors import ExitCode, ValidationError
from rumba_bids.cli.validation import find_validator, validate

VALIDATOR = find_validator()
needs_validator = pytest.mark.skipif(
    VALIDATOR is None,
    reason="bids-validator-deno is not installed (pip install bids-validator-deno)",
)


@needs_validator
def test_demo_dataset_is_valid(demo_template):
    assert validate(demo_template, selected_subjects={"01", "02"}) > 0  # warnings only


@needs_validator
def test_errors_fail_validation_unless_already_reported(demo_copy):
    (demo_copy / "sub-02/dwi/sub-02_dwi.bval").unlink()
    with pytest.raises(ValidationError, match="DWI_MISSING_BVAL") as info:
        validate(demo_copy, selected_subjects={"01", "02"})
    assert info.value.exit_code == ExitCode.VALIDATION_FAILED
    assert "--skip-bids-validation" in info.value.one_line()
    # the run was rejected by the pre-flight checks (its own exit code): not counted again
    validate(demo_copy, selected_subjects={"01", "02"}, ignored_runs={"sub-02_dwi"})
    # a participant that is not processed does not fail validation
    validate(demo_copy, selected_subjects={"01"})


@needs_validator
def test_not_bids_fails(tmp_path):
    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "sub-01").mkdir()
    (tmp_path / "sub-01" / "notes.txt").write_text("hello")
    with pytest.raises(ValidationError, match="BIDS validation failed"):
        validate(tmp_path, selected_subjects={"01"})
