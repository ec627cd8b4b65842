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


def drifting_disc(centres: list[int], radius: float = 9.0) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of a disc whose centre column moves slice by slice (``centres``): the image a bright blob
    fading from its centre (as an organ's intensity varies inside it: a flat disc gives the demons nothing to
    pull on but its edge), the labels the disc."""
    j, i = np.mgrid[0:64, 0:64]
    distance = np.stack([np.hypot(j - 32, i - c) for c in centres])
    return (0.1 + 0.8 * np.exp(-((distance / radius) ** 2))).astype(np.float32), (distance < radius).astype(np.uint8)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (nonzero = inside)."""
    return 2.0 * float(((a > 0) & (b > 0)).sum()) / float((a > 0).sum() + (b > 0).sum())
