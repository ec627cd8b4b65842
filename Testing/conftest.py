"""Fixtures of the engine tests (helpers in engine/enginetesting.py)."""

from __future__ import annotations

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
