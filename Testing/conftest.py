"""Fixtures of the engine tests (helpers in engine/enginetesting.py)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from enginetesting import acdc_path, write_volume  # Testing/engine is on pytest's pythonpath (pyproject.toml)


@pytest.fixture
def acdc():
    return acdc_path


@pytest.fixture
def toy_case(tmp_path):
    """A (K=6, J=40, I=36) volume with a bright disc (class 1) and a ring (class 2); slices 1 and 4 labelled."""
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[0:6, 0:40, 0:36]
    r = np.hypot(j - 20, i - 18)
    labels = np.zeros((6, 40, 36), np.uint8)
    labels[r < 8] = 1
    labels[(r >= 8) & (r < 12)] = 2
    image = (0.2 + 0.6 * (labels == 1) + 0.35 * (labels == 2) + 0.05 * rng.standard_normal(labels.shape)).astype(
        np.float32
    )
    sparse = np.zeros_like(labels)
    sparse[[1, 4]] = labels[[1, 4]]
    return {
        "image": write_volume(tmp_path / "image.nrrd", image),
        "labels": write_volume(tmp_path / "labels.nrrd", sparse),
        "full_labels": labels,
        "dir": tmp_path,
    }


_SESSION: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _SESSION["exitstatus"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process with pytest's own exit status once everything is reported, without the
    interpreter's teardown. That teardown, after the last test and the summary, has to unwind VTK's and
    slicer-core's MRML objects, torch's thread pools and the browser tests' servers in whatever order
    the garbage collector takes them, and once crashed with a segmentation fault (exit 139 after a
    summary of all tests passed). A failed test still ends the run with pytest's non-zero status."""
    if "exitstatus" in _SESSION:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_SESSION["exitstatus"])
