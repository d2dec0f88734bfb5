"""Memory limits checked up front, and clean stops on SIGINT / SIGTERM / SIGHUP.

Memory: every step of a run must fit in ``--mem`` (default: the machine's
memory, or its cgroup limit in a container).  The RUMBA-SD voxel-wise fit
adapts (it processes voxels in blocks that fit, with identical results); the
brain-mask and response steps hold the whole series, and the global fit (and
``--tv``) every voxel at once, so a run that cannot fit is refused before
anything starts, with the memory it needs.

Signals: :func:`stop_on_signals` turns SIGINT, SIGTERM and SIGHUP into an
:class:`Interrupted` exception in the main process (so ``finally`` blocks
remove temporary files), and makes Nipype's worker processes, forked from it,
exit quietly; :func:`stop_workers` ends those still running and shuts down
their pools (registered with :func:`track_pool`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from contextlib import contextmanager

from ..core.memory import InsufficientMemoryError

logger = logging.getLogger("rumba_bids.cli")

#: Share of the machine's memory used when --mem is not given (Nipype's MultiProc default).
MACHINE_MEMORY_SHARE = 0.9
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STEPS = {
    "dwi": "the brain-mask and response steps, which hold the whole series",
    "fit": "the RUMBA-SD fit",
    "fod": "the SH projection and peak extraction",
}


def format_gb(value: float) -> str:
    """``'2.50 GB'``, or ``'120 MB'`` below 1 GB.

    >>> format_gb(2.5), format_gb(0.12)
    ('2.50 GB', '120 MB')
    """
    return f"{value:.2f} GB" if value >= 1 else f"{value * 1000:.0f} MB"


def machine_memory_gb() -> float | None:
    """Memory this process may use (GB): physical memory, or a smaller cgroup limit."""
    from .machine import available_memory_bytes

    total = available_memory_bytes()
    return None if total is None else total / 1e9


def memory_limit_gb(mem_gb: float | None) -> float | None:
    """``--mem``, or :data:`MACHINE_MEMORY_SHARE` of :func:`machine_memory_gb`."""
    if mem_gb is not None:
        return float(mem_gb)
    machine = machine_memory_gb()
    return None if machine is None else MACHINE_MEMORY_SHARE * machine


def check_memory(run, model, *, limit_gb: float, from_option: bool) -> dict:
    """Raise :class:`InsufficientMemoryError` when a step of ``run`` cannot fit in ``limit_gb``.

    Parameters
    ----------
    run : rumba_bids.inputs.record.DwiRun
        Its DWI and b-value files, and the pre-flight's facts (mask size).
    model : ModelOptions
    limit_gb : float
    from_option : bool
        Whether the limit is ``--mem`` (else the machine's memory), for the message.

    Returns
    -------
    dict
        The least memory (GB) of each step (``dwi``, ``fit``, ``fod``).
    """
    from ..workflows.rumba import minimum_mem_gb

    minimum = minimum_mem_gb(
        str(run.dwi_file),
        bval_file=str(run.bval_file),
        sphere=model.sphere,
        fit=model.fit,
        use_tv=model.use_tv,
        sh_order=model.sh_order,
        npeaks=model.npeaks,
        n_voxels=run.mask_voxels,
    )
    step, needed = max(minimum.items(), key=lambda item: item[1])
    if needed <= limit_gb:
        return minimum
    limit = format_gb(limit_gb)
    where = f"--mem is {limit}" if from_option else f"this machine allows {limit}"
    hints = ["raise --mem" if from_option else "run it on a machine with more memory"]
    if step == "fit" and model.fit == "global":
        counted = "the mask's voxels" if run.mask_voxels else "every voxel of the grid"
        hints.append(f"use --fit voxelwise (processed in blocks that fit); counted: {counted}")
    if step == "fit" and model.sphere != "repulsion100":
        hints.append("use a smaller --sphere")
    raise InsufficientMemoryError(
        f"needs at least {format_gb(needed)} for {_STEPS[step]} but {where}: "
        + "; or ".join(hints),
        path=run.dwi_file,
    )


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP received by the main process."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report it."""
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


#: Signals received by the main process since :func:`stop_on_signals` was entered.
_RECEIVED: list[int] = []


@contextmanager
def stop_on_signals():
    """Raise :class:`Interrupted` in the main process on SIGINT, SIGTERM and SIGHUP.

    Nipype turns any exception raised while a step runs in the main process
    (the derivative sinks; every step with the Linear plugin) into a failed
    step and goes on, so the signal is also recorded: :func:`stop_if_interrupted`,
    Nipype's status callback, raises it again before the next step starts, and
    :func:`raise_if_interrupted` after the graph.  Worker processes forked while
    the handlers are installed (Nipype's MultiProc pool) inherit them and exit
    at once with ``128 + signal``, without a traceback.  Outside the main
    thread nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    main_pid = os.getpid()
    _RECEIVED.clear()

    def handler(signum, frame):
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        # the pool is about to report its lost workers: expected now
        logging.getLogger("concurrent.futures").disabled = True
        _RECEIVED.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a stop signal was received (and swallowed)."""
    if _RECEIVED:
        raise Interrupted(_RECEIVED[0])


def stop_if_interrupted(node, status: str) -> None:
    """Nipype ``status_callback``: no step starts once a stop signal was received."""
    if status == "start":
        raise_if_interrupted()


#: Process pools of this process (the MultiProc plugin's), for :func:`shut_down_pools`.
_POOLS: weakref.WeakSet = weakref.WeakSet()


def track_pool(pool):
    """Register a ``concurrent.futures`` process pool for :func:`shut_down_pools`; return it."""
    _POOLS.add(pool)
    return pool


def stop_workers(timeout: float = 5.0) -> int:
    """Terminate the worker processes this process started; return how many.

    Then shut down the pools registered with :func:`track_pool`
    (:func:`shut_down_pools`), waiting for their manager threads.  A pool
    whose workers died notices it in its manager thread, which then closes
    the pipe the interpreter's exit hook writes to: left running, that thread
    races with the exit (CPython 3.11 prints an ``OSError: [Errno 9] Bad file
    descriptor`` traceback, or hangs; 5 and 2 times in 20 bare repeats), a
    race fixed upstream by python/cpython#125492 (gh-125451), not in 3.11.
    """
    import multiprocessing

    # the pool reports its lost workers through the futures' callbacks: expected here
    logging.getLogger("concurrent.futures").disabled = True
    workers = multiprocessing.active_children()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(timeout)
        if worker.is_alive():
            worker.kill()
            worker.join(timeout)
    shut_down_pools()
    return len(workers)


def shut_down_pools() -> None:
    """Shut down the pools registered with :func:`track_pool`, waiting for their threads.

    Nipype shuts its pool down only when every step ran; a pool left to the
    garbage collector or the interpreter's exit ends in a thread of its own,
    racing with the exit (see :func:`stop_workers`).  Call it when no worker
    is still running a step (it would wait for the step), or after
    :func:`stop_workers` ended them.
    """
    for pool in list(_POOLS):
        pool.shutdown(wait=True, cancel_futures=True)
        _POOLS.discard(pool)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; else nothing).

    A worker of a main process killed outright would otherwise finish its step
    and then wait forever, racing with a rerun over the same work directory.
    """
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
