"""Helpers of the engine tests: real-data paths, volumes on rotated grids, job folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def acdc_path(kind: str, case: str = "patient003_frame01") -> Path:
    path = DATA / "acdc" / kind / f"{case}.nii.gz"
    if not path.is_file():
        pytest.fail(f"real ACDC data missing at {path}: the tests need ../shared/data beside the checkout")
    return path


ROTATED = (0.0, -1.0, 0.0, 0.8, 0.0, -0.6, 0.6, 0.0, 0.8)  # a proper rotation, not axis-aligned


def write_volume(
    path: Path, array: np.ndarray, spacing=(0.8, 0.9, 2.5), origin=(-10.0, 20.0, 5.0), direction=ROTATED
) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def write_job(job_dir: Path, **fields) -> Path:
    job = {
        "format_version": 1,
        "image": "image.nrrd",
        "labels": "labels.nrrd",
        "train": {
            "iterations": 2,
            "size": 32,
            "batch_labeled": 2,
            "batch_unlabeled": 2,
            "val_every": 0,
            "checkpoint_every": 1,
        },
    }
    job.update(fields)
    (job_dir / "job.json").write_text(json.dumps(job))
    return job_dir
