import pickle

import pytest

from rumba_bids.interfaces.errors import InputDataError, InputMissingError, RumbaInputError


def test_message_names_the_file_first_and_carries_the_exit_code():
    error = InputDataError("/data/sub-01_dwi.bval", "64 b-values but x.nii.gz has 65 volumes")
    assert str(error) == "/data/sub-01_dwi.bval: 64 b-values but x.nii.gz has 65 volumes"
    assert isinstance(error, ValueError) and isinstance(error, RumbaInputError)
    assert (error.exit_code, error.path) == (65, "/data/sub-01_dwi.bval")


def test_missing_input_is_also_a_file_not_found_error():
    error = InputMissingError("/data/none.nii.gz", "DWI image not found (no such file)")
    assert isinstance(error, FileNotFoundError) and isinstance(error, ValueError)
    assert error.exit_code == 66
    assert str(error) == "/data/none.nii.gz: DWI image not found (no such file)"
    with pytest.raises(FileNotFoundError, match="none.nii.gz: DWI image not found"):
        raise error


@pytest.mark.parametrize("cls", [InputDataError, InputMissingError])
def test_errors_survive_pickling(cls):
    # Nipype pickles exceptions into crash files and across MultiProc workers
    error = pickle.loads(pickle.dumps(cls("a.nii", "bad")))
    assert type(error) is cls
    assert (error.path, error.problem, str(error)) == ("a.nii", "bad", "a.nii: bad")
