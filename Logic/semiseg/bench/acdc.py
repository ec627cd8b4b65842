"""The ACDC semi-supervised protocol of the papers, at a budget this machine can afford.

Labelled: every slice of the ``labeled_3`` (or ``labeled_7``) patients of ``splits.json`` (both
frames); unlabelled: every slice of the other ``train`` patients; scored on the 10 ``val``
patients (both frames), predicted slice by slice, resized back, 3D Dice/Jaccard/HD95/ASD per class
(RV, Myo, LV) and volume, averaged over volumes. One fixed protocol for every row: the same
budget, the same scoring code, the last checkpoint (no checkpoint is picked on the scored data).
The learning curve, when asked for, scores intermediate weights on the same patients for the plot
only; it never changes which weights are reported.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import SliceSet, Volume, build_slice_sets, load_volume
from ..inference import Predictor, predict_volume
from ..metrics import evaluate_volume
from ..training import Trainer, TrainData
from ..training.progress import ProgressLog

__all__ = ["load_acdc", "run_method", "evaluate_model", "CLASS_NAMES"]

CLASS_NAMES = ["background", "RV", "Myo", "LV"]


def _cases(root: Path, patients: list[str]) -> list[tuple[Path, Path]]:
    out = []
    for p in patients:
        for img in sorted((root / "images").glob(f"{p}_frame*.nii.gz")):
            out.append((img, root / "labels" / img.name))
    return out


def load_acdc(root: str | Path, labeled: str = "labeled_3", size: int = 128, max_unlabeled: int | None = None,
              max_val: int | None = None) -> tuple[TrainData, list[Volume]]:
    """Slice sets of the protocol and the validation volumes (with labels) to score on."""
    root = Path(root)
    splits = json.loads((root / "splits.json").read_text())
    lab_patients = splits[labeled]
    unl_patients = [p for p in splits["train"] if p not in lab_patients][:max_unlabeled]
    labeled_vols = [load_volume(i, l, 4) for i, l in _cases(root, lab_patients)]
    unlabeled_vols = [load_volume(i) for i, _ in _cases(root, unl_patients)]
    val_vols = [load_volume(i, l, 4) for i, l in _cases(root, splits["val"][:max_val])]
    train, _, unl = build_slice_sets(labeled_vols, unlabeled_vols, axis=2, size=size, min_val_slices=10**9)
    empty = SliceSet(train.images[:0], train.labels[:0], [])  # type: ignore[index]
    return TrainData(train, empty, unl, 4), val_vols


def evaluate_model(predictor: Predictor, volumes: list[Volume]) -> dict[str, Any]:
    """Per-volume 3D metrics averaged over volumes, per class and overall."""
    per_volume = [evaluate_volume(predict_volume(predictor, v, 2)["labels"], v.labels, 4, (1.0, 1.0, 1.0), CLASS_NAMES) for v in volumes]
    classes = {}
    for name in CLASS_NAMES[1:]:
        classes[name] = {k: float(np.nanmean([pv["classes"][name][k] for pv in per_volume])) for k in ("dice", "jaccard", "hd95_vox", "asd_vox")}
    mean = {k: float(np.mean([classes[c][k] for c in classes])) for k in ("dice", "jaccard", "hd95_vox", "asd_vox")}
    return {"classes": classes, "mean": mean, "volumes": len(volumes)}


def run_method(method: str, data: TrainData, val: list[Volume], config: TrainConfig, options: dict[str, Any] | None,
               run_dir: str | Path, curve_every: int = 0) -> dict[str, Any]:
    """Train ``method`` on ``data`` with ``config`` and score the last checkpoint on ``val``."""
    run_dir = Path(run_dir)
    trainer = Trainer(config, method, options or {}, 4, run_dir, meta={"axis": 2, "class_names": CLASS_NAMES},
                      log=ProgressLog(run_dir / "progress.jsonl", stream=None))
    curve: list[dict[str, float]] = []
    train_seconds = 0.0
    t = time.perf_counter()

    def on_step(it: int, _: dict[str, Any]) -> None:
        nonlocal t, train_seconds
        if curve_every and it % curve_every == 0 and it < config.iterations:
            train_seconds += time.perf_counter() - t
            trainer.save()
            score = evaluate_model(Predictor(trainer.checkpoint_path, config.device), val)["mean"]["dice"]
            curve.append({"iteration": it, "minutes": round(train_seconds / 60, 2), "dice": round(score, 4)})
            t = time.perf_counter()

    trainer.fit(data, on_step=on_step)
    train_seconds += time.perf_counter() - t
    scores = evaluate_model(Predictor(trainer.checkpoint_path, config.device), val)
    curve.append({"iteration": config.iterations, "minutes": round(train_seconds / 60, 2), "dice": round(scores["mean"]["dice"], 4)})
    return {"method": method, "options": options or {}, "train": dataclasses.asdict(config), "minutes": round(train_seconds / 60, 2),
            "seconds_per_iteration": round(train_seconds / config.iterations, 3), "scores": scores, "curve": curve}
