"""Exit codes (BIDS-Apps execution specification) and the errors that carry them.

Every expected failure is a :class:`RumbaBidsError`; ``main()`` turns it into
one line on stderr and its exit code, never a traceback.
"""

from __future__ import annotations

from ..inputs.errors import (  # noqa: F401  (re-exported: the errors the app ends with)
    CannotCreateOutputError,
    DataError,
    ExitCode,
    InputMissingError,
    NoRunsSelectedError,
    ProcessingError,
    RumbaBidsError,
    UnknownLevelError,
    UsageError,
    ValidationError,
)

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
      than --mem or the machine allows, an --input-type the dataset contradicts,
      a --sh-order the --sphere cannot determine)
  65  data error (bval/bvec/volume counts disagree, no b0 volume, zero-length or
      NaN b-vectors, b-values not in s/mm^2, a 3D/5D, corrupt or non-NIfTI image,
      NaN/inf values, an all-zero volume, deep negative values, a mask on another
      grid, empty or not binary)
  66  input missing (bids_dir absent or neither BIDS nor an HCP-YA tree, bval/bvec
      file missing, a QSIPrep dataset without any desc-preproc DWI)
  73  cannot create output (output or work directory not writable)
  129 interrupted by SIGHUP (as 130)
  130 interrupted by SIGINT (Ctrl-C): finished steps stay in the work directory,
      no derivative is left half-written; rerun the same command to resume
  143 interrupted by SIGTERM (as 130)"""
