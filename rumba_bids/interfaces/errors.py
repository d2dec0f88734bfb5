"""Errors for bad inputs, with the exit code and the one-line message they end in.

Every expected failure is a :class:`RumbaBidsError`: a message, the file
concerned and an exit code of the BIDS-Apps execution specification, rendered
as one line by :meth:`RumbaBidsError.one_line`.  The interfaces raise
:class:`RumbaInputError` (also a ``ValueError``) whose message starts with the
file concerned; the input layer (:mod:`rumba_bids.inputs`) and the command line
raise and catch the same classes, so a file refused by an interface and by the
pre-flight check gets the same line and the same exit code.

Examples
--------
>>> error = InputDataError("sub-01_dwi.bval", "64 b-values but sub-01_dwi.nii.gz has 65 volumes")
>>> str(error)
'sub-01_dwi.bval: 64 b-values but sub-01_dwi.nii.gz has 65 volumes'
>>> error.exit_code, error.path
(65, 'sub-01_dwi.bval')
>>> error.one_line()
'rumba-bids: error: sub-01_dwi.bval: 64 b-values but sub-01_dwi.nii.gz has 65 volumes'
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of ``rumba-bids`` and ``rumba-bids-demo``."""

    SUCCESS = 0
    PROCESSING_FAILED = 1
    VALIDATION_FAILED = 16
    UNKNOWN_LEVEL = 17
    NO_RUNS_SELECTED = 18
    USAGE = 64
    DATA = 65
    NO_INPUT = 66
    CANNOT_CREATE_OUTPUT = 73
    INTERRUPTED_SIGHUP = 129
    INTERRUPTED_SIGINT = 130
    INTERRUPTED_SIGTERM = 143


#: BIDS-Apps exit code of a data error (inconsistent or unreadable data).
EXIT_DATA_ERROR = int(ExitCode.DATA)
#: BIDS-Apps exit code of a missing input.
EXIT_INPUT_MISSING = int(ExitCode.NO_INPUT)


class RumbaBidsError(Exception):
    """An expected failure: a one-line message, the file concerned, an exit code."""

    exit_code = ExitCode.PROCESSING_FAILED

    def __init__(self, message: str, *, path=None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self.path))

    def one_line(self, prog: str = "rumba-bids") -> str:
        """``<prog>: error: <path>: <message>`` on a single line."""
        where = f"{self.path}: " if self.path else ""
        text = " ".join(f"{where}{self.message}".split())
        return f"{prog}: error: {text}"


def _rebuild(cls, message, path):
    return cls(message, path=path)


class DataError(RumbaBidsError):
    """The content of an input is unusable or inconsistent (exit code 65)."""

    exit_code = ExitCode.DATA


class MissingInputError(RumbaBidsError):
    """A required input does not exist (exit code 66); ``InputMissingError`` in
    :mod:`rumba_bids.inputs.errors` and :mod:`rumba_bids.cli.errors`."""

    exit_code = ExitCode.NO_INPUT


class RumbaInputError(RumbaBidsError, ValueError):
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

    exit_code = ExitCode.DATA

    def __init__(self, path, problem: str):
        Exception.__init__(self, f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
        self.message = problem

    def __reduce__(self):
        # keep (path, problem) when pickled into Nipype crash files / worker processes
        return (type(self), (self.path, self.problem))


class InputDataError(RumbaInputError, DataError):
    """The file exists but its content is unusable or inconsistent (exit code 65)."""

    exit_code = ExitCode.DATA


class InputMissingError(RumbaInputError, MissingInputError, FileNotFoundError):
    """A required input file does not exist (exit code 66)."""

    exit_code = ExitCode.NO_INPUT
