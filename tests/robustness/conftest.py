"""Fixtures of the robustness tests: a tiny dataset for the pre-flight checks, a small
phantom that is fitted in seconds (see :mod:`.helpers`)."""

import shutil

import pytest

from rumba_bids.cli.demo import make_demo_dataset

from .helpers import PHANTOM_SHAPE, write_tiny_dataset


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "bids")


@pytest.fixture
def tiny_bids(tiny_template, tmp_path):
    """A private copy of the tiny dataset."""
    target = tmp_path / "bids"
    shutil.copytree(tiny_template, target)
    return target


@pytest.fixture(scope="session")
def phantom_template(tmp_path_factory):
    """One single-shell subject of the demo phantom (read only)."""
    root = tmp_path_factory.mktemp("phantom") / "bids"
    make_demo_dataset(root, n_subjects=1, n_sessions=1, seed=3, shape=PHANTOM_SHAPE)
    shutil.rmtree(root / "derivatives")
    return root
