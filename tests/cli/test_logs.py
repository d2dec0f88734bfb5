"""Console logging: Nipype node messages become short per-run lines."""

import logging
import sys

from rumba_bids.cli.logs import LostWorkerFilter, NipypeConsoleFilter


def record(message, *, name="nipype.workflow", level=logging.INFO):
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_node_messages_are_rewritten():
    console = NipypeConsoleFilter({"sub_01_ses_1_wf": "sub-01_ses-1"})
    setup = record('[Node] Setting-up "top_wf.sub_01_ses_1_wf.rumba_wf.fit_rumba" in "/w".')
    assert not console.filter(setup)
    finished = record('[Node] Finished "fit_rumba", elapsed time 12.34s.')
    assert console.filter(finished)
    assert finished.getMessage() == "sub-01_ses-1 | fit_rumba done (12.3 s)"
    cached = record('[Node] Cached "top_wf.sub_01_ses_1_wf.rumba_wf.brain_mask" - collecting')
    assert console.filter(cached) and cached.getMessage() == "sub-01_ses-1 | brain_mask (cached)"
    assert not console.filter(record("[MultiProc] Running 2 tasks"))
    skipped = record(
        "Skipping cached node top_wf.sub_01_ses_1_wf.rumba_wf.fit_rumba with ID 3.",
        level=logging.DEBUG,
    )
    assert console.filter(skipped) and skipped.levelno == logging.INFO
    assert skipped.getMessage() == "sub-01_ses-1 | fit_rumba (cached)"
    assert not console.filter(record("Progress: 33 jobs", level=logging.DEBUG))


def test_crashes_lose_their_traceback():
    console = NipypeConsoleFilter()
    crash = record(
        "Saving crash info to /out/sub-01/log/x/crash-1.txt\nTraceback (most recent call last):\n"
        '  File "x.py", line 1\nValueError: median_otsu found no brain voxel',
        level=logging.ERROR,
    )
    assert console.filter(crash)
    message = crash.getMessage()
    assert "Traceback" not in message
    assert "  ValueError: median_otsu found no brain voxel" in message
    assert "crash file: /out/sub-01/log/x/crash-1.txt" in message
    assert not console.filter(
        record("Traceback (most recent call last): ...", level=logging.ERROR)
    )


def test_failures_name_the_run():
    console = NipypeConsoleFilter({"sub_02_wf": "sub-02"})
    error = record(
        '[Node] Error on "top.sub_02_wf.rumba_wf.fit_rumba" (/w)', level=logging.WARNING
    )
    assert console.filter(error) and error.getMessage() == "sub-02 | fit_rumba FAILED"
    assert not console.filter(record("Node fit_rumba failed to run on host x.", level=40))
    assert not console.filter(record("could not run node: top.sub_02_wf.x", level=40))
    crash = record(
        "Saving crash info to /c.txt\nTraceback\nrumba_bids.interfaces.errors.InputDataError: bad",
        level=logging.ERROR,
    )
    assert console.filter(crash) and "  InputDataError: bad\n" in crash.getMessage()


def test_interface_messages_pass():
    console = NipypeConsoleFilter()
    progress = record("RUMBA-SD fit: 50% done", name="nipype.interface")
    assert console.filter(progress) and progress.getMessage() == "RUMBA-SD fit: 50% done"


def test_a_lost_worker_is_one_line_without_traceback():
    try:
        raise RuntimeError("A process in the process pool was terminated abruptly")
    except RuntimeError:
        lost = logging.LogRecord(
            "concurrent.futures", logging.ERROR, __file__, 1, "exception calling callback",
            None, sys.exc_info(),
        )  # fmt: skip
    assert LostWorkerFilter().filter(lost)
    assert lost.exc_info is None and "Traceback" not in logging.Formatter().format(lost)
    assert lost.getMessage().startswith("a worker process ended abruptly (RuntimeError")
