"""``semiseg demo``: the main job on a sample that ships with the install.

The sample is the MNI152 2009a T1 template with its grey- and white-matter probability maps, as
nilearn's package installs them (no download). The demo writes a job folder in which only a few
axial slices keep their labels (grey matter, white matter), trains, predicts every slice,
scores the slices that were hidden and draws a montage of image, pseudo-labels and confidence.
It needs the ``demo`` extra (nilearn for the sample, matplotlib for the montage):
``pip install -e ".[demo]"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .contract import JOB_FORMAT_VERSION
from .errors import InputError

__all__ = ["check_demo_dependencies", "sample_paths", "make_demo_job", "run_demo", "save_montage"]


DEMO_EXTRA = ("nilearn", "matplotlib")
"""The packages of the ``demo`` extra: the sample comes with nilearn, matplotlib draws the montage."""


def check_demo_dependencies() -> None:
    """Raise :class:`InputError` saying how to install the ``demo`` extra when one of its packages is missing."""
    import importlib.util

    missing = [name for name in DEMO_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"semiseg demo needs {' and '.join(missing)} (the demo extra): pip install -e '.[demo]' "
                         f"in a checkout, or pip install {' '.join(missing)}")


def sample_paths() -> dict[str, Path]:
    """Paths of the MNI152 template files inside the installed nilearn package."""
    check_demo_dependencies()
    import nilearn

    base = Path(nilearn.__file__).parent / "datasets" / "data"
    paths = {k: base / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
    for p in paths.values():
        if not p.is_file():
            raise InputError("MNI152 template file missing from the nilearn install", p)
    return paths


def evenly_spread(candidates: np.ndarray, k: int) -> list[int]:
    """``k`` distinct indices spread evenly over ``candidates``: the centres of ``k`` equal bins."""
    n = len(candidates)
    if k >= n:
        return [int(c) for c in candidates]
    return [int(candidates[int((i + 0.5) * n / k)]) for i in range(k)]


def make_demo_job(out: str | Path, slices: int = 3, shrink: int = 2) -> dict[str, object]:
    """Write ``out/job`` (image, sparse labels, job.json) and ``out/reference_labels.nii.gz``.

    The template is shrunk by ``shrink`` per axis (2 mm voxels) to keep the demo fast on a CPU.
    Labels: 1 = grey matter, 2 = white matter where that map exceeds 50 % and the other.
    """
    paths = sample_paths()
    t1, gm, wm = (
        sitk.Shrink(sitk.ReadImage(str(paths[k]), sitk.sitkFloat32), [shrink] * 3) for k in ("t1", "gm", "wm")
    )
    g, w = sitk.GetArrayFromImage(gm), sitk.GetArrayFromImage(wm)
    g, w = g / max(1.0, g.max()), w / max(1.0, w.max())
    labels = np.zeros(g.shape, np.uint8)
    labels[(g >= 0.5) & (g >= w)] = 1
    labels[(w >= 0.5) & (w > g)] = 2
    out = Path(out)
    job_dir = out / "job"
    job_dir.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(t1, str(job_dir / "image.nii.gz"))
    ref = sitk.GetImageFromArray(labels)
    ref.CopyInformation(t1)
    sitk.WriteImage(ref, str(out / "reference_labels.nii.gz"))
    with_labels = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(1))
    keep = evenly_spread(with_labels, slices)
    sparse = np.zeros_like(labels)
    sparse[keep] = labels[keep]
    lab = sitk.GetImageFromArray(sparse)
    lab.CopyInformation(t1)
    sitk.WriteImage(lab, str(job_dir / "labels.nii.gz"))
    return {"job_dir": job_dir, "labeled": keep, "hidden": [int(i) for i in with_labels if i not in keep]}


def save_montage(
    image: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    slices: list[int],
    path: str | Path,
    title: str = "",
    captions: dict[int, str] | None = None,
) -> Path:
    """A PNG with one row per slice (numpy axis 0): image, pseudo-labels over the image, confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(slices), 3, figsize=(9, 3 * len(slices)), squeeze=False)
    for row, k in enumerate(slices):
        axes[row, 0].imshow(image[k], cmap="gray", origin="lower")
        axes[row, 1].imshow(image[k], cmap="gray", origin="lower")
        axes[row, 1].imshow(
            np.ma.masked_equal(labels[k], 0),
            cmap="tab10",
            vmin=0,
            vmax=9,
            alpha=0.6,
            origin="lower",
            interpolation="nearest",
        )
        im = axes[row, 2].imshow(confidence[k], cmap="viridis", vmin=0, vmax=1, origin="lower")
        axes[row, 0].set_ylabel(f"slice {k}" + (f"\n{captions[k]}" if captions and k in captions else ""))
        for a in axes[row]:
            a.set_xticks([])
            a.set_yticks([])
    for a, t in zip(axes[0], ("image", "pseudo-labels", "confidence")):
        a.set_title(t)
    fig.colorbar(im, ax=axes[:, 2].tolist(), shrink=0.6)
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run_demo(
    out: str | Path = "semiseg-demo", iterations: int = 300, method: str = "supervised", slices: int = 3
) -> dict[str, object]:
    """Make the demo job, train, predict, score the hidden slices, draw the montage; returns the scores."""
    from .inference.metrics import evaluate_volume, to_jsonable
    from .job import load_job, run_job

    check_demo_dependencies()  # before training, not after it at the montage
    out = Path(out).resolve()
    made = make_demo_job(out, slices)
    job_dir = Path(made["job_dir"])  # type: ignore[arg-type]
    (job_dir / "job.json").write_text(
        json.dumps(
            {
                "format_version": JOB_FORMAT_VERSION,
                "image": "image.nii.gz",
                "labels": "labels.nii.gz",
                "axis": 2,
                "classes": ["background", "grey matter", "white matter"],
                "method": method,
                "train": {
                    "iterations": iterations,
                    "size": 128,
                    "batch_labeled": 4,
                    "batch_unlabeled": 4,
                    "optimizer": "sgd",
                    "lr": 0.03,
                    "val_every": 0,
                    "checkpoint_every": 100,
                },
                "run_dir": str(out / "run"),
            },
            indent=1,
        )
    )
    summary = run_job(load_job(job_dir, allow_outside_run_dir=True))  # our own job: its run goes beside the job folder
    pred_dir = Path(summary["predictions"]["image"])
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "labels.nii.gz")))
    conf = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "confidence.nii.gz")))
    ref_img = sitk.ReadImage(str(out / "reference_labels.nii.gz"))
    ref = sitk.GetArrayFromImage(ref_img)
    hidden = made["hidden"]
    scores = to_jsonable(
        evaluate_volume(
            pred[hidden],
            ref[hidden],
            3,
            tuple(reversed(ref_img.GetSpacing())),
            ["background", "grey matter", "white matter"],
        )
    )
    report = {
        "labeled_slices": made["labeled"],
        "hidden_slices": len(hidden),
        "method": method,
        "iterations": iterations,
        "train_seconds": round(summary["seconds"], 1),
        "hidden_slice_scores": scores,
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=1))
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(job_dir / "image.nii.gz")))
    review = json.loads((pred_dir / "review.json").read_text())
    least = [e["index"] for e in review["slices"] if not e["labeled"] and e["foreground_fraction"] > 0][:1]
    middle = hidden[len(hidden) // 2]
    captions = {made["labeled"][0]: "labelled", middle: "hidden", **{k: "least confident" for k in least}}
    save_montage(
        image,
        pred,
        conf,
        sorted(captions),
        out / "montage.png",
        f"{method}, {len(made['labeled'])} labelled slices, {iterations} it: mean Dice on hidden slices "
        f"{scores['mean']['dice']:.3f}",
        captions,
    )
    print(
        json.dumps(
            {
                "event": "demo",
                "out": str(out),
                "montage": str(out / "montage.png"),
                "mean_dice_hidden_slices": scores["mean"]["dice"],
                "train_seconds": report["train_seconds"],
            }
        )
    )
    return report
