"""Fixtures of the report tests: a fake derivatives folder (see :mod:`fake_derivatives`)."""

from __future__ import annotations

import pytest

from .fake_derivatives import FakeDataset, write_fake_dataset


@pytest.fixture(scope="session")
def fake_dataset(tmp_path_factory) -> FakeDataset:
    """Raw + derivatives of sub-01 (2 sessions); see :mod:`fake_derivatives`."""
    return write_fake_dataset(tmp_path_factory.mktemp("reports"))
