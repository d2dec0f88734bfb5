"""Console logging a person can follow: one line per run and stage, no tracebacks.

Nipype's node messages are rewritten into ``<run> | <stage> started/done``
lines; its crash reports are cut down to the error's last line and the crash
file (the full traceback stays in the crash file).  With ``-vv`` every Nipype
message passes unchanged.
"""

from __future__ import annotations

import logging
import re
import sys
import threading

LOGGER_NAME = "rumba_bids"
FORMAT = "%(asctime)s %(message)s"
DATE_FORMAT = "%H:%M:%S"

_SETTING_UP = re.compile(r'^\[Node\] Setting-up "(?P<fullname>[^"]+)"')
_CACHED = re.compile(r'^\[Node\] Cached "(?P<fullname>[^"]+)"')
_SKIPPED = re.compile(r"^Skipping cached node (?P<fullname>\S+) with ID")
_FINISHED = re.compile(r'^\[Node\] Finished "(?P<name>[^"]+)", elapsed time (?P<secs>[0-9.e+-]+)s')
_ERROR_ON = re.compile(r'^\[Node\] Error on "(?P<fullname>[^"]+)"')
_FAILED = re.compile(r"^Node (?P<name>\S+) failed to run")
_NOT_RUN = re.compile(r"^could not run node: |^Storing result file without outputs")
_EXCEPTION_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<kind>\w+(?:Error|Exception)): ")
_CRASH = re.compile(r"^Saving crash info to (?P<path>\S+)")
#: What Nipype appends to the traceback of a step without a result file (a lost batch job).
_NOTE = re.compile(
    r"\s*(When creating this crashfile, the results file|During the creation of "
    r"this crashfile triggered by the above exception).*\Z",
    re.S,
)


class NipypeConsoleFilter(logging.Filter):
    """Rewrite ``nipype.workflow`` records into short per-run lines.

    Parameters
    ----------
    run_labels : dict
        Maps a per-run workflow name (``sub_01_ses_1_wf``) to the run's label
        (``sub-01_ses-1``).
    """

    def __init__(self, run_labels=None):
        super().__init__()
        self.run_labels = dict(run_labels or {})
        self._local = threading.local()

    def _describe(self, fullname: str) -> str:
        parts = fullname.split(".")
        label = next((self.run_labels[p] for p in parts if p in self.run_labels), None)
        stage = parts[-1]
        return f"{label} | {stage}" if label else stage

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("nipype.workflow"):
            return True  # interface messages (fit progress, choices) pass unchanged
        message = record.getMessage()
        match = _SKIPPED.match(message)
        if match:  # the distributed plugins reuse a finished node without running it
            record.levelno, record.levelname = logging.INFO, "INFO"
            name = match.group("fullname")
            record.msg, record.args = f"{self._describe(name)} (cached)", None
            return not name.split(".")[-1].startswith("ds_")
        if record.levelno < logging.INFO:
            return False
        match = _SETTING_UP.match(message)
        if match:
            self._local.current = match.group("fullname")
            return False
        match = _CACHED.match(message)
        if match:
            record.msg, record.args = f"{self._describe(match.group('fullname'))} (cached)", None
            return not match.group("fullname").split(".")[-1].startswith("ds_")
        match = _FINISHED.match(message)
        if match:
            current = getattr(self._local, "current", match.group("name"))
            name = current if current.endswith(match.group("name")) else match.group("name")
            if name.split(".")[-1].startswith("ds_"):
                return False  # one line per derivative would drown the stages
            record.msg = f"{self._describe(name)} done ({float(match.group('secs')):.1f} s)"
            record.args = None
            return True
        match = _ERROR_ON.match(message)
        if match:
            record.msg, record.args = f"{self._describe(match.group('fullname'))} FAILED", None
            record.levelno, record.levelname = logging.ERROR, "ERROR"
            return True
        if _FAILED.match(message) or _NOT_RUN.match(message):
            return False  # said by the "FAILED" line and the final summary
        match = _CRASH.match(message)
        if match:
            lines = [line for line in _NOTE.sub("", message).splitlines()[1:] if line.strip()]
            reason = lines[-1].strip() if lines else "see the crash file"
            reason = _EXCEPTION_PREFIX.sub(lambda m: f"{m.group('kind')}: ", reason)
            record.msg = f"  {reason}\n  crash file: {match.group('path')}"
            record.args = None
            return True
        return record.levelno >= logging.WARNING and "Traceback" not in message


class LostWorkerFilter(logging.Filter):
    """One line instead of a traceback when a process pool reports a lost worker.

    ``concurrent.futures`` logs the exception Nipype's MultiProc callback raises when
    a worker process dies (killed by the OOM killer, say); the step is then reported
    as failed by Nipype, so the console only needs to know why.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            kind = record.exc_info[0].__name__ if record.exc_info[0] else "error"
            record.msg = f"a worker process ended abruptly ({kind}: killed, e.g. out of memory?)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def setup_logging(verbosity: int = 0, *, run_labels=None, log_file=None):
    """Configure the ``rumba_bids`` and ``nipype`` loggers for the console.

    Parameters
    ----------
    verbosity : int
        0: per-run stage lines and fit progress; 1: also debug lines of
        rumba-bids; 2+: every Nipype message, unfiltered.
    run_labels : dict, optional
        See :class:`NipypeConsoleFilter`.
    log_file : path, optional
        Also write everything (unfiltered, DEBUG) to this file.

    Returns
    -------
    NipypeConsoleFilter
        The filter, to update its ``run_labels`` once the graph is built.
    """
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    nipype_config.set("logging", "workflow_level", "INFO")
    nipype_config.set("logging", "interface_level", "INFO")
    nipype_config.set("logging", "utils_level", "WARNING")
    nipype_config.set("logging", "log_to_file", "false")
    nipype_logging.update_logging(nipype_config)

    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    console_filter = NipypeConsoleFilter(run_labels)

    ours = logging.getLogger(LOGGER_NAME)
    ours.handlers.clear()
    ours.addHandler(console)
    ours.setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
    ours.propagate = False

    workflow_handler = logging.StreamHandler(sys.stderr)
    workflow_handler.setFormatter(formatter)
    if verbosity < 2:
        workflow_handler.addFilter(console_filter)
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        nipype_logger = logging.getLogger(name)
        for handler in list(nipype_logger.handlers):
            nipype_logger.removeHandler(handler)
        nipype_logger.addHandler(workflow_handler)
        nipype_logger.propagate = False
    pool_logger = logging.getLogger("concurrent.futures")
    pool_logger.handlers.clear()
    pool_handler = logging.StreamHandler(sys.stderr)
    pool_handler.setFormatter(formatter)
    pool_handler.addFilter(LostWorkerFilter())
    pool_logger.addHandler(pool_handler)
    pool_logger.propagate = False
    pool_logger.disabled = False
    # DEBUG records reach the filter, which keeps only "Skipping cached node" (as INFO)
    logging.getLogger("nipype.workflow").setLevel(logging.DEBUG)
    logging.getLogger("nipype.interface").setLevel(logging.INFO)
    logging.getLogger("nipype.utils").setLevel(logging.WARNING)

    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
        )
        for name in (LOGGER_NAME, "nipype.workflow", "nipype.interface"):
            logging.getLogger(name).addHandler(file_handler)
    return console_filter
