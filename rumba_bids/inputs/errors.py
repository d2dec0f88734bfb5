"""Errors of the input layer and the command line (each carries its exit code).

The base classes live in :mod:`rumba_bids.interfaces.errors` (the interfaces
raise them too); :mod:`rumba_bids.cli.errors` re-exports everything here.
"""

from __future__ import annotations

from ..interfaces.errors import DataError, ExitCode, RumbaBidsError
from ..interfaces.errors import MissingInputError as InputMissingError

__all__ = [
    "CannotCreateOutputError",
    "DataError",
    "ExitCode",
    "InputMissingError",
    "NoRunsSelectedError",
    "ProcessingError",
    "RumbaBidsError",
    "UnknownLevelError",
    "UsageError",
    "ValidationError",
]


class UsageError(RumbaBidsError):
    exit_code = ExitCode.USAGE


class UnknownLevelError(RumbaBidsError):
    exit_code = ExitCode.UNKNOWN_LEVEL


class ValidationError(RumbaBidsError):
    exit_code = ExitCode.VALIDATION_FAILED


class NoRunsSelectedError(RumbaBidsError):
    exit_code = ExitCode.NO_RUNS_SELECTED


class CannotCreateOutputError(RumbaBidsError):
    exit_code = ExitCode.CANNOT_CREATE_OUTPUT


class ProcessingError(RumbaBidsError):
    exit_code = ExitCode.PROCESSING_FAILED
