"""Shared fixtures: MNIST is loaded once per test session (about a second)."""

from __future__ import annotations

import pytest

from digitrec.training.data import Mnist, load_mnist


@pytest.fixture(scope="session")
def mnist() -> Mnist:
    return load_mnist(allow_download=False)
