"""The worker pool of the numerical core (rumba_bids.core.threads)."""

from __future__ import annotations

import threading
import time

import pytest

from rumba_bids.core.threads import WorkerPool, resolve_threads


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_every_item_runs_once_and_done_sees_it_in_the_calling_thread(n_threads):
    ran, finished = [], []
    caller = threading.get_ident()

    def done(item):
        assert threading.get_ident() == caller
        finished.append(item)

    with WorkerPool(n_threads) as pool:
        for _ in range(3):  # several rounds on one pool
            pool.run(ran.append, range(500), done=done)
    assert sorted(ran) == sorted(finished) == sorted(list(range(500)) * 3)


def test_a_failing_item_cancels_the_rest_and_raises_after_the_running_ones_end():
    started, ended = [], []

    def work(item):
        started.append(item)
        if item == 1:
            raise RuntimeError("item 1 failed")
        time.sleep(0.05)
        ended.append(item)

    with WorkerPool(2) as pool, pytest.raises(RuntimeError, match="item 1 failed"):
        pool.run(work, range(50))
    assert len(started) < 50  # the items not started yet were cancelled
    assert sorted(ended) == sorted(item for item in started if item != 1)  # none left running


def test_an_error_in_done_stops_the_round():
    def done(item):
        raise KeyError(f"done {item}")

    with WorkerPool(2) as pool, pytest.raises(KeyError, match="done"):
        pool.run(lambda item: None, range(20), done=done)


def test_threads_are_validated():
    assert resolve_threads(2) == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_threads must be None or an integer >= 1"):
            resolve_threads(bad)
