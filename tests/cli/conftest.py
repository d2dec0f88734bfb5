"""Shared fixtures of the command-line tests: small demo datasets."""

import shutil

import pytest

from rumba_bids.cli.demo import make_demo_dataset

#: Small enough to be fast, large enough for median_otsu to find the brain.
TEST_SHAPE = (32, 36, 26)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """The demo dataset (2 subjects, sub-01 with 2 sessions, sub-02 multi-shell); read only."""
    root = tmp_path_factory.mktemp("demo") / "bids"
    make_demo_dataset(root, n_subjects=2, n_sessions=2, seed=1, shape=TEST_SHAPE)
    return root


@pytest.fixture
def demo_copy(demo_template, tmp_path):
    """A private, modifiable copy of the demo dataset (without the ground truth)."""
    target = tmp_path / "bids"
    shutil.copytree(demo_template, target, ignore=shutil.ignore_patterns("derivatives"))
    return target
