"""Exit codes (BIDS-Apps execution specification) and the errors that carry them.

Every expected failure is a :class:`RumbaBidsError`; ``main()`` turns it into
one line on stderr and its exit code, never a traceback.
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


EXIT_CODE_HELP = """\
exit codes:
  0   success
  1   processing failed (at least one run crashed or was invalid; crash files in
      <output_dir>/sub-<label>/log/<run_uuid>/)
  16  BIDS validation failed
  17  unknown analysis level
  18  the participant/session labels or --bids-filter-file selected no DWI run
  64  usage error (bad flags or values, output_dir equal to or inside bids_dir,
      labels or filters that are not BIDS values, a run that needs more memory
      than --mem or the machine allows)
  65  data error (bval/bvec/volume counts disagree, no b0 volume, zero-length or
      NaN b-vectors, b-values not in s/mm^2, a 3D/5D, corrupt or non-NIfTI image,
      NaN/inf values, an all-zero volume, deep negative values, a mask on another
      grid, empty or not binary)
  66  input missing (bids_dir absent or not BIDS, bval/bvec file missing)
  73  cannot create output (output or work directory not writable)
  129 interrupted by SIGHUP (as 130)
  130 interrupted by SIGINT (Ctrl-C): finished steps stay in the work directory,
      no derivative is left half-written; rerun the same command to resume
  143 interrupted by SIGTERM (as 130)"""


class RumbaBidsError(Exception):
    """An expected failure: a one-line message, the file concerned, an exit code."""

    exit_code = ExitCode.PROCESSING_FAILED

    def __init__(self, message: str, *, path=None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def one_line(self, prog: str = "rumba-bids") -> str:
        """``<prog>: error: <path>: <message>`` on a single line."""
        where = f"{self.path}: " if self.path else ""
        text = " ".join(f"{where}{self.message}".split())
        return f"{prog}: error: {text}"


class UsageError(RumbaBidsError):
    exit_code = ExitCode.USAGE


class UnknownLevelError(RumbaBidsError):
    exit_code = ExitCode.UNKNOWN_LEVEL


class ValidationError(RumbaBidsError):
    exit_code = ExitCode.VALIDATION_FAILED


class NoRunsSelectedError(RumbaBidsError):
    exit_code = ExitCode.NO_RUNS_SELECTED


class DataError(RumbaBidsError):
    exit_code = ExitCode.DATA


class InputMissingError(RumbaBidsError):
    exit_code = ExitCode.NO_INPUT


class CannotCreateOutputError(RumbaBidsError):
    exit_code = ExitCode.CANNOT_CREATE_OUTPUT


class ProcessingError(RumbaBidsError):
    exit_code = ExitCode.PROCESSING_FAILED
