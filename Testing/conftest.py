"""Shared fixtures: paths to the real data and small synthetic volumes on rotated grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def acdc_path(kind: str, case: str = "patient003_frame01") -> Path:
    path = DATA / "acdc" / kind / f"{case}.nii.gz"
    if not path.is_file():
        pytest.fail(f"real ACDC data missing at {path}: the tests need ../shared/data beside the checkout")
    return path


@pytest.fixture
def acdc():
    return acdc_path


ROTATED = (0.0, -1.0, 0.0, 0.8, 0.0, -0.6, 0.6, 0.0, 0.8)  # a proper rotation, not axis-aligned


def write_volume(path: Path, array: np.ndarray, spacing=(0.8, 0.9, 2.5), origin=(-10.0, 20.0, 5.0), direction=ROTATED) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def toy_case(tmp_path):
    """A (K=6, J=40, I=36) volume with a bright disc (class 1) and a ring (class 2); slices 1 and 4 labelled."""
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[0:6, 0:40, 0:36]
    r = np.hypot(j - 20, i - 18)
    labels = np.zeros((6, 40, 36), np.uint8)
    labels[r < 8] = 1
    labels[(r >= 8) & (r < 12)] = 2
    image = (0.2 + 0.6 * (labels == 1) + 0.35 * (labels == 2) + 0.05 * rng.standard_normal(labels.shape)).astype(np.float32)
    sparse = np.zeros_like(labels)
    sparse[[1, 4]] = labels[[1, 4]]
    return {
        "image": write_volume(tmp_path / "image.nrrd", image),
        "labels": write_volume(tmp_path / "labels.nrrd", sparse),
        "full_labels": labels,
        "dir": tmp_path,
    }


def write_job(job_dir: Path, **fields) -> Path:
    job = {"format_version": 1, "image": "image.nrrd", "labels": "labels.nrrd",
           "train": {"iterations": 2, "size": 32, "batch_labeled": 2, "batch_unlabeled": 2, "val_every": 0, "checkpoint_every": 1}}
    job.update(fields)
    (job_dir / "job.json").write_text(json.dumps(job))
    return job_dir
