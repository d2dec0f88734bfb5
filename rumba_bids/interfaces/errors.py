"""Errors for bad inputs reaching an interface.

Every expected input problem (a missing file, an unreadable image, counts that
disagree, a mask on another grid) raises a :class:`RumbaInputError`: a
``ValueError`` whose message starts with the file concerned, and whose
``exit_code`` follows the BIDS-Apps execution specification (65: data error,
66: input missing), so that a command-line front end can report one line and
exit with the right code.

Examples
--------
>>> error = InputDataError("sub-01_dwi.bval", "64 b-values but sub-01_dwi.nii.gz has 65 volumes")
>>> str(error)
'sub-01_dwi.bval: 64 b-values but sub-01_dwi.nii.gz has 65 volumes'
>>> error.exit_code, error.path
(65, 'sub-01_dwi.bval')
"""

from __future__ import annotations

#: BIDS-Apps exit code of a data error (inconsistent or unreadable data).
EXIT_DATA_ERROR = 65
#: BIDS-Apps exit code of a missing input.
EXIT_INPUT_MISSING = 66


class RumbaInputError(ValueError):
    """An input file that cannot be processed.

    Parameters
    ----------
    path : str or os.PathLike
        The file concerned (named first in the message).
    problem : str
        What is wrong and, where possible, what to change.

    Attributes
    ----------
    path : str
    problem : str
    exit_code : int
    """

    exit_code = EXIT_DATA_ERROR

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # keep (path, problem) when pickled into Nipype crash files / worker processes
        return (type(self), (self.path, self.problem))


class InputDataError(RumbaInputError):
    """The file exists but its content is unusable or inconsistent (exit code 65)."""

    exit_code = EXIT_DATA_ERROR


class InputMissingError(RumbaInputError, FileNotFoundError):
    """A required input file does not exist (exit code 66)."""

    exit_code = EXIT_INPUT_MISSING
