"""The ACDC semi-supervised protocol of the papers, at a budget this machine can afford.

Labelled: every slice of the ``labeled_3`` (or ``labeled_7``) patients of ``splits.json`` (both
frames); unlabelled: every slice of the other ``train`` patients; scored on the 10 ``val``
patients (both frames), predicted slice by slice, resized back, 3D Dice/Jaccard/HD95/ASD per class
(RV, Myo, LV) and volume, averaged over volumes. One fixed protocol for every row: the same
budget, the same scoring code, the last checkpoint (no checkpoint is picked on the scored data).
The learning curve, when asked for, scores intermediate weights on the same patients for the plot
only; it never changes which weights are reported.

Run (the budget of docs/BENCHMARKS.md; ``semiseg bench acdc`` takes the same options)::

    python benchmarks/acdc_protocol.py --labeled labeled_3 --iterations 1000 --size 128 --batch 4 \
        --curve-every 100 --out bench-results/acdc3.jsonl --plot docs/images/acdc3_curve.png

Each finished method appends one JSON line to ``--out`` (a re-run skips methods already there; a
file holding another budget is refused), the learning-curve figure is drawn from the file, and the
summary table is printed last. ``--methods`` chooses the rows; ``full`` is ``supervised`` on all 70
train patients labelled (the upper bound at the same budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from semiseg.contract import PRECISIONS
from semiseg.errors import InputError
from semiseg.inference import Predictor, predict_volume
from semiseg.inference.metrics import evaluate_volume
from semiseg.io.slices import SliceSet, Volume, build_slice_sets, load_volume
from semiseg.training import TrainData, Trainer
from semiseg.training.config import TrainConfig
from semiseg.training.progress import ProgressLog
from semiseg.training.recipes import SHORT_BUDGET

from .common import bench_train_config, default_data_root, read_jsonl

__all__ = ["load_acdc", "run_method", "evaluate_model", "CLASS_NAMES", "RECIPE", "add_arguments", "run_protocol",
           "summary_table", "class_table", "main"]

CLASS_NAMES = ["background", "RV", "Myo", "LV"]

# Our short-budget recipe (docs/BENCHMARKS.md, semiseg.training.recipes): a supervised warm-up, then a ramp
# of the unsupervised weight. The papers' defaults (no warm-up, no ramp) are the methods' own defaults.
RECIPE = dict(SHORT_BUDGET)


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
    per_volume = [
        evaluate_volume(predict_volume(predictor, v, 2)["labels"], v.labels, 4, (1.0, 1.0, 1.0), CLASS_NAMES)
        for v in volumes
    ]
    classes = {}
    for name in CLASS_NAMES[1:]:
        classes[name] = {
            k: float(np.nanmean([pv["classes"][name][k] for pv in per_volume]))
            for k in ("dice", "jaccard", "hd95_vox", "asd_vox")
        }
    mean = {k: float(np.mean([classes[c][k] for c in classes])) for k in ("dice", "jaccard", "hd95_vox", "asd_vox")}
    return {"classes": classes, "mean": mean, "volumes": len(volumes)}


def run_method(
    method: str,
    data: TrainData,
    val: list[Volume],
    config: TrainConfig,
    options: dict[str, Any] | None,
    run_dir: str | Path,
    curve_every: int = 0,
) -> dict[str, Any]:
    """Train ``method`` on ``data`` with ``config`` and score the last checkpoint on ``val``."""
    run_dir = Path(run_dir)
    trainer = Trainer(
        config,
        method,
        options or {},
        4,
        run_dir,
        meta={"axis": 2, "class_names": CLASS_NAMES},
        log=ProgressLog(run_dir / "progress.jsonl", stream=None),
    )
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
    curve.append(
        {
            "iteration": config.iterations,
            "minutes": round(train_seconds / 60, 2),
            "dice": round(scores["mean"]["dice"], 4),
        }
    )
    return {
        "method": method,
        "options": options or {},
        "train": dataclasses.asdict(config),
        "minutes": round(train_seconds / 60, 2),
        "seconds_per_iteration": round(train_seconds / config.iterations, 3),
        "scores": scores,
        "curve": curve,
    }


# -- the protocol runner (benchmarks/acdc_protocol.py and ``semiseg bench acdc``) -------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="the ACDC folder (default: ../shared/data/acdc)")
    p.add_argument("--labeled", default="labeled_3", choices=["labeled_3", "labeled_7"])
    p.add_argument("--methods", default="supervised,fixmatch,unimatch,crossmatch,semsim,refguided,full")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="the forward passes' precision")
    p.add_argument(
        "--curve-every",
        type=int,
        default=0,
        help="score intermediate weights every N iterations for the learning curve",
    )
    p.add_argument(
        "--paper-defaults",
        action="store_true",
        help="use the methods' paper defaults instead of our short-budget recipe",
    )
    p.add_argument("--max-unlabeled", type=int, help="limit unlabelled patients (smoke runs)")
    p.add_argument("--max-val", type=int, help="limit scored patients (smoke runs)")
    p.add_argument("--out", default="bench-results/acdc.jsonl")
    p.add_argument("--runs", default="bench-results/runs")
    p.add_argument("--plot", help="PNG of the learning curve of the best method and supervised (default: beside --out)")


def _budget(a: argparse.Namespace) -> dict[str, Any]:
    return {
        "iterations": a.iterations,
        "size": a.size,
        "batch": a.batch,
        "lr": a.lr,
        "seed": a.seed,
        "recipe": "paper defaults" if a.paper_defaults else RECIPE,
        "max_unlabeled": a.max_unlabeled,
        **({"precision": a.precision} if a.precision != "auto" else {}),
        "max_val": a.max_val,
    }


def run_protocol(a: argparse.Namespace) -> list[dict[str, Any]]:
    """Train and score every row of ``a.methods`` not yet in ``a.out``; returns every record of the file."""

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = _budget(a)
    old = read_jsonl(out)
    if any(r.get("budget", budget) != json.loads(json.dumps(budget)) for r in old):
        raise InputError("holds results of another budget; write to a new --out so every row shares one budget", out)
    done = {r["row"] for r in old}
    root = Path(a.data) if a.data else default_data_root() / "acdc"
    cache: dict[str, tuple[TrainData, list[Volume]]] = {}
    for row in a.methods.split(","):
        if row in done:
            continue
        labeled = "train" if row == "full" else a.labeled
        if labeled not in cache:
            cache[labeled] = load_acdc(root, labeled, a.size, a.max_unlabeled, a.max_val)
        data, val = cache[labeled]
        method = "supervised" if row == "full" else row
        options = {} if method == "supervised" or a.paper_defaults else dict(RECIPE)
        cfg = bench_train_config(a, checkpoint_every=max(1, a.iterations // 4))
        result = run_method(method, data, val, cfg, options, Path(a.runs) / f"{a.labeled}-{row}", a.curve_every)
        result["row"], result["protocol"], result["labeled_slices"], result["budget"] = (
            row,
            labeled,
            len(data.labeled),
            budget,
        )
        with out.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(
            json.dumps({"row": row, "mean_dice": result["scores"]["mean"]["dice"], "minutes": result["minutes"]}),
            flush=True,
        )
    rows = read_jsonl(out)
    if a.plot and rows:
        from .plots import plot_learning_curve

        plot_learning_curve(
            rows, a.plot, title=f"ACDC {a.labeled}: {a.iterations} it, {a.size}px, batch {a.batch}+{a.batch}, CPU"
        )
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Dice per class (%), mean Dice, HD95 and ASD (voxels), training minutes and s/iteration per row."""
    lines = [f"{'row':<12}{'RV':>7}{'Myo':>7}{'LV':>7}{'mean':>7}{'HD95':>8}{'ASD':>7}{'min':>7}{'s/it':>7}"]
    for r in rows:
        c, m = r["scores"]["classes"], r["scores"]["mean"]
        lines.append(
            f"{r['row']:<12}{c['RV']['dice'] * 100:7.1f}{c['Myo']['dice'] * 100:7.1f}"
            f"{c['LV']['dice'] * 100:7.1f}{m['dice'] * 100:7.1f}"
            f"{m['hd95_vox']:8.1f}{m['asd_vox']:7.1f}{r['minutes']:7.1f}{r['seconds_per_iteration']:7.2f}"
        )
    return "\n".join(lines)


def _num(value: float | None, scale: float) -> str:
    """One decimal; ``-`` for a distance that does not exist (an empty prediction; stored as null)."""
    return "-" if value is None or value != value else f"{value * scale:.1f}"


def class_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: Dice and Jaccard (%), HD95 and ASD (voxels) of every class, per row."""
    head = "| row | " + " | ".join(f"{c} Dice / Jaccard / HD95 / ASD" for c in CLASS_NAMES[1:]) + " |"
    lines = [head, "|---|" + "---|" * (len(CLASS_NAMES) - 1)]
    for r in rows:
        cells = [
            " / ".join(
                _num(v[k], scale) for k, scale in (("dice", 100), ("jaccard", 100), ("hd95_vox", 1), ("asd_vox", 1))
            )
            for v in (r["scores"]["classes"][c] for c in CLASS_NAMES[1:])
        ]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(a: argparse.Namespace) -> int:
    if a.plot is None:
        a.plot = str(Path(a.out).with_suffix(".png"))
    rows = run_protocol(a)
    print()
    print(class_table(rows))
    print()
    print(summary_table(rows))
    return 0
