"""Fixtures for the MRML glue tests (helpers in :mod:`mrmltesting`)."""

from __future__ import annotations

import pytest

from mrmltesting import SceneSetup


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: needs the engine package (torch, MONAI); select with -m engine")


@pytest.fixture
def setup():
    return SceneSetup()


@pytest.fixture
def scene(setup):
    return setup.scene
