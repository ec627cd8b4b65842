"""The clinician scenario: k labelled slices of one volume, the rest of the volume predicted.

For each volume of a dataset (LA or ACDC) and each k, keep the labels of k slices only, chosen
evenly among the slices that hold the structure (:func:`keep_slices`), and fill in the rest of the
volume in several ways (rows):

- ``interpolation``: what a Slicer user does today with the same k slices, "Fill between slices",
  i.e. ITK's ``MorphologicalContourInterpolator`` (Albu et al. 2008; the PyPI package
  ``itk-morphologicalcontourinterpolation``) with its default settings, along the slicing axis. It
  fills only *between* labelled slices (no extrapolation), so with k = 1 it adds nothing.
- ``supervised``: the engine trained on the k slices alone (the other slices carry no loss).
- ``completion``: the product's pipeline, the ``supervised`` network fused with the shape prior of
  the k slices (:mod:`semiseg.completion`); ``--candidates`` adds the rows of :data:`CANDIDATES`;
- one row per semi-supervised method (``--methods``, default ``unimatch``): the k slices labelled,
  every other slice of the volume and every slice of the dataset's other volumes unlabelled
  (those volumes are read without their labels).

Every row is scored by the same code (:func:`score_hidden`): the prediction and the reference
on the whole volume with the k labelled slices blanked in both, i.e. 3D Dice and HD95 per class
over *all* hidden slices, the empty ones outside the structure included (a false positive there
costs). Distances use the volume's true slice positions (HD95 in voxels and in mm). The trained
rows use the same budget (iterations, size, batch, learning rate, seed) and the last checkpoint;
nothing is chosen on the hidden slices.

Run (the budget of docs/BENCHMARKS.md)::

    python benchmarks/clinician.py --dataset la --volumes 4 --k 1,2,3,5 --iterations 200 --size 96 \\
        --out bench-results/clinician_la.jsonl --plot docs/images/clinician_la.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from semiseg.completion import CompletionConfig, ShapePrior
from semiseg.contract import PRECISIONS
from semiseg.errors import InputError
from semiseg.inference import Predictor
from semiseg.inference.metrics import evaluate_volume
from semiseg.io.images import volume_name
from semiseg.io.slices import SliceSet, Volume, build_slice_sets, labeled_slice_indices, load_volume, take_slices
from semiseg.methods import METHODS
from semiseg.training import TrainData, Trainer
from semiseg.training.config import ModelConfig, TrainConfig
from semiseg.training.progress import ProgressLog

from .acdc import CLASS_NAMES as ACDC_CLASSES, RECIPE
from .common import (
    add_option_argument,
    append_jsonl,
    bench_train_config,
    check_methods,
    default_data_root,
    format_table,
    int_list,
    read_jsonl,
    sparsify,
    str_list,
)
from .inputs import INPUT_ROWS, inference_input, training_slices

__all__ = ["keep_slices", "hidden_slices", "sparsify", "score_hidden", "contour_interpolation", "list_dataset",
           "named_volumes", "run_case", "run", "summary_table", "add_arguments", "main"]

INTERPOLATION = "interpolation"
COMPLETION = "completion"
"""The product's pipeline: ``supervised`` on the k slices, fused with their shape prior (:mod:`semiseg.completion`).
It shares the ``supervised`` row's training (one network, scored twice: alone and fused)."""
CANDIDATES = ("prior", "completion_inside", "completion_pl", "completion_lcc", "completion_shape", *INPUT_ROWS)
"""Rows that measure the pipeline's parts (``--candidates``, or ``--candidates ROW,...`` for some): the prior
alone (interpolation and the shrinking shapes beyond it, no network), the fusion without the shapes beyond the
labelled range, a network trained with the interpolated slices as weighted extra labels
(``CompletionConfig.pseudo_labels`` 1), then fused, and the fusion with each class cut to its largest 3D
connected component (:func:`largest_components`; the voxels cut become background), and the fusion with the
shape-based prior, which does not look at the image (``CompletionConfig.interpolation`` ``"shape"``: the default
before the prior followed the image by registration), and the networks that see the slice's neighbours or the
prior as input channels, then fused (:mod:`.inputs`)."""
SHARED_ROWS = ("supervised", COMPLETION, "prior", "completion_inside", "completion_lcc", "completion_shape")
"""Rows scored from the ``supervised`` row's network, without training again."""
DISTANCE_BINS = ((1, 1, "1"), (2, 3, "2-3"), (4, 7, "4-7"), (8, 10**9, "8+"))
DATASETS: dict[str, list[str]] = {"la": ["background", "LA"], "acdc": list(ACDC_CLASSES)}


# -- which slices are kept, which are scored ---------------------------------------------------
def keep_slices(candidates: Sequence[int], k: int) -> list[int]:
    """``k`` distinct indices spread evenly over ``candidates``: the centres of ``k`` equal bins.

    Bin ``j`` of ``n`` candidates is centred at position ``(j + 0.5) n / k - 0.5``, rounded half up;
    centres lie at least one position apart, so the ``k`` picks are distinct, and the ends of the
    structure (often small and atypical) are never the only labels. ``k >= n`` keeps all.
    """
    cand = sorted(int(c) for c in candidates)
    n = len(cand)
    if k <= 0:
        raise InputError(f"k must be >= 1, got {k}")
    if k >= n:
        return cand
    return [cand[int(np.floor((j + 0.5) * n / k))] for j in range(k)]


def hidden_slices(num_slices: int, kept: Sequence[int]) -> list[int]:
    """Every slice index that is not kept: the slices a row is scored on."""
    keep = set(kept)
    return [i for i in range(num_slices) if i not in keep]


def score_hidden(pred: np.ndarray, ref: np.ndarray, kept: Sequence[int], axis: int, num_classes: int,
                 spacing_kji: Sequence[float], class_names: Sequence[str]) -> dict[str, Any]:
    """Dice and HD95 per class on the hidden slices: ``pred`` and ``ref`` with the kept slices blanked in both.

    Returns ``{"dice", "hd95_vox", "hd95_mm", "classes": {name: {...}}}``; the means are over the
    classes present in either map (NaN distances, i.e. one map empty, left out of the mean).
    """
    p, r = pred.copy(), ref.copy()
    for arr in (p, r):
        np.moveaxis(arr, 2 - axis, 0)[list(kept)] = 0
    scores = evaluate_volume(p, r, num_classes, spacing_kji, class_names)
    classes = {n: {k: m[k] for k in ("dice", "hd95_vox", "hd95_mm")} for n, m in scores["classes"].items()}
    return {
        "dice": scores["mean"]["dice"],
        "hd95_vox": scores["mean"]["hd95_vox"],
        "hd95_mm": scores["mean"]["hd95_mm"],
        "classes": classes,
    }


# -- the rows ---------------------------------------------------------------------------------
def _itk():
    try:
        import itk
    except ImportError:
        raise InputError(
            "the interpolation row needs ITK's MorphologicalContourInterpolator: "
            "pip install 'semiseg[bench]' (package itk-morphologicalcontourinterpolation)"
        ) from None
    return itk


def _interpolate_gap(itk, stack: np.ndarray) -> np.ndarray:
    """The filter on a binary (n, rows, cols) stack labelled on its first and last slice only; numpy axis 0 = ITK
    axis 2."""
    interpolator = itk.MorphologicalContourInterpolator.New(
        itk.image_from_array(np.ascontiguousarray(stack, dtype=np.uint8))
    )
    interpolator.SetAxis(2)
    interpolator.Update()
    return np.asarray(itk.array_from_image(interpolator.GetOutput()))


def contour_interpolation(labels: np.ndarray, axis: int) -> np.ndarray:
    """ITK's morphological contour interpolation of a sparse label map (K, J, I) along IJK ``axis``.

    The filter (Albu et al. 2008, the one behind Slicer's "Fill between slices") interpolates each
    label between consecutive slices that hold it, with its default settings: no extrapolation
    beyond the outermost labelled slices. We run it once per label and per such pair of slices, on
    the sub-stack between them, and paste the in-between slices back (a higher label wins where two
    overlap); the labelled slices are returned unchanged. Why per pair: on the PyPI wheels
    (itk-morphologicalcontourinterpolation 2.1.1 and 2.1.2, ITK 5.4) a single call on a volume with
    three or more labelled slices corrupts the process heap (glibc aborts at exit) and, with two
    adjacent labelled slices, even rewrites a labelled slice; a call with two labelled slices is
    clean, and where the whole-volume call behaves (checked on LA and ACDC label maps) the two
    give identical maps. Returns a uint8 map on the same grid.
    """
    if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
        raise InputError("contour interpolation takes labels 0..255")
    itk = _itk()
    src = np.moveaxis(np.asarray(labels), 2 - axis, 0)
    result = np.ascontiguousarray(labels, dtype=np.uint8).copy()
    out = np.moveaxis(result, 2 - axis, 0)
    for label in (int(v) for v in np.unique(src) if v):
        mask = src == label
        holding = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        for a, b in zip(holding[:-1], holding[1:]):
            if b - a < 2:
                continue
            filled = _interpolate_gap(itk, mask[a : b + 1])[1:-1] > 0
            out[a + 1 : b][filled] = label
    return result


def slice_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    confidence: np.ndarray,
    kept: Sequence[int],
    axis: int,
    distance: np.ndarray,
    inside: np.ndarray,
) -> dict[str, Any]:
    """Per hidden slice that holds structure in ``pred`` or ``ref``: foreground Dice (all classes as one) by
    distance to the nearest kept slice (:data:`DISTANCE_BINS`, and ``outside`` the kept range), and the
    Spearman correlation between the slice's review confidence and its Dice (``review.json``'s statistic)."""
    from scipy.stats import spearmanr

    from semiseg.inference.review import review_slices

    p, r = take_slices(pred, axis), take_slices(ref, axis)
    review = {e["index"]: e["confidence"] for e in review_slices(pred, confidence, axis)}
    dice, conf, bins = [], [], {}
    for i in range(p.shape[0]):
        if i in kept or not (p[i].any() or r[i].any()):
            continue
        d = 2 * float(((p[i] == r[i]) & (r[i] > 0)).sum()) / float((p[i] > 0).sum() + (r[i] > 0).sum())
        dice.append(d)
        conf.append(review[i])
        name = "outside" if not inside[i] else next(n for lo, hi, n in DISTANCE_BINS if lo <= distance[i] <= hi)
        bins.setdefault(name, []).append(d)
    rho = float(spearmanr(conf, dice)[0]) if len(dice) > 2 and np.ptp(conf) > 0 else None
    return {"by_distance": {n: [float(np.mean(v)), len(v)] for n, v in bins.items()}, "spearman_confidence_dice": rho}


def _train_predict(
    method: str,
    volume: Volume,
    sparse: Volume,
    others: list[Volume],
    config: TrainConfig,
    options: dict[str, Any],
    num_classes: int,
    axis: int,
    run_dir: Path,
    extra_labeled: SliceSet | None = None,
    kept_budget: dict[str, Any] | None = None,
    reuse: bool = False,
    channels: tuple[SliceSet, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Train ``method`` on ``sparse`` and predict ``volume``. With ``kept_budget`` (a kept run folder) the folder
    records the finished training's budget; with ``reuse`` too, a folder that already holds a finished training of
    that budget is predicted again, not retrained (``--reuse-runs``). ``channels`` (:mod:`.inputs`): the labelled
    training slices with extra input channels, and the whole volume's input (in_channels, K, J, I)."""
    done = run_dir / "bench_training.json"
    kept = json.loads(done.read_text()) if reuse and done.is_file() and (run_dir / "checkpoint.pt").is_file() else {}
    if kept_budget is not None and kept.get("budget") == json.loads(json.dumps(kept_budget)):
        extra = {**kept["extra"], "reused": True}
    else:
        if channels is not None:
            labeled, unl = channels[0], SliceSet.concat([], config.size, False)
        else:
            unlabeled = others if method != "supervised" else []
            labeled, _, unl = build_slice_sets([sparse], unlabeled, axis, config.size, min_val_slices=10**9)
        if extra_labeled is not None and len(extra_labeled):
            labeled = SliceSet.concat(
                [dataclasses.replace(labeled, weights=torch.ones(len(labeled))), extra_labeled], config.size, True
            )
        empty = labeled.concat([], config.size, True)
        data = TrainData(labeled, empty, unl, num_classes)
        trainer = Trainer(
            config,
            method,
            options,
            num_classes,
            run_dir,
            ModelConfig(in_channels=labeled.images.shape[1]),
            meta={"axis": axis},
            log=ProgressLog(run_dir / "progress.jsonl", stream=None),
        )
        t = time.perf_counter()
        trainer.fit(data)
        extra = {"train_seconds": time.perf_counter() - t, "labeled_slices": len(labeled), "unlabeled_slices": len(unl)}
        if kept_budget is not None:
            done.write_text(json.dumps({"budget": kept_budget, "extra": extra}))
    t = time.perf_counter()
    image = volume.image if channels is None else channels[1]
    probs = Predictor(run_dir / "checkpoint.pt", config.device).probabilities(image, axis)
    return probs, {**extra, "predict_seconds": time.perf_counter() - t}


def run_case(
    volume: Volume,
    others: list[Volume],
    k: int,
    rows: Sequence[str],
    config: TrainConfig,
    options: dict[str, Any],
    class_names: Sequence[str],
    axis: int = 2,
    run_root: str | Path | None = None,
    kept_budget: dict[str, Any] | None = None,
    reuse: bool = False,
) -> list[dict[str, Any]]:
    """All rows for one volume and one k; returns one record per row (``[]`` when nothing would be hidden).
    With ``run_root``, ``kept_budget`` and ``reuse`` say what its run folders record and whether a finished one is
    predicted again instead of retrained (see :func:`_train_predict`)."""
    assert volume.labels is not None
    structure = labeled_slice_indices(volume.labels, axis)
    kept = keep_slices(structure, k)
    if len(kept) < k or len(kept) == len(structure):
        return []
    sparse = dataclasses.replace(volume, labels=sparsify(volume.labels, axis, kept), extra_labeled={})
    hidden = hidden_slices(volume.num_slices(axis), kept)
    num_classes = len(class_names)
    base = {
        "volume": volume.name,
        "k": k,
        "kept": kept,
        "hidden_slices": len(hidden),
        "hidden_structure_slices": len(set(structure) - set(kept)),
    }
    records = []
    shared: dict[str, Any] = {}  # the supervised network, for the rows fused with the prior
    t = time.perf_counter()
    prior = ShapePrior.build(sparse.labels, axis, kept, num_classes, image=volume.image)  # type: ignore[arg-type]
    base["prior_seconds"] = time.perf_counter() - t  # its interpolation (the registration) and its fit
    for row in rows:
        t = time.perf_counter()
        extra: dict[str, Any] = {}
        confidence = None
        if row == INTERPOLATION:
            pred = contour_interpolation(sparse.labels, axis)  # type: ignore[arg-type]
        elif row in SHARED_ROWS and shared:
            probs, extra = shared["probs"], dict(shared["extra"])
        else:
            opts = (
                {}
                if row in (*SHARED_ROWS, "completion_pl", *INPUT_ROWS)
                else dict(options)
            )
            tmp = tempfile.mkdtemp(prefix="semiseg-clin-") if run_root is None else None
            run_dir = Path(tmp) if tmp else Path(run_root) / volume.name / f"k{k}" / row  # type: ignore[arg-type]
            method = row if row in METHODS else "supervised"
            labels_from_prior = (
                prior.pseudo_labeled(volume.image, volume.name, config.size, 1.0) if row == "completion_pl" else None
            )
            channels = None
            if row in INPUT_ROWS:
                channels = (
                    training_slices(row, volume.image, sparse.labels, axis, kept, num_classes, config.size,
                                    volume.name, prior),
                    inference_input(row, volume.image, axis, prior),
                )
            try:
                probs, extra = _train_predict(
                    method, volume, sparse, others, config, opts, num_classes, axis, run_dir, labels_from_prior,
                    kept_budget if run_root is not None else None, reuse, channels,
                )
            finally:
                if tmp:
                    shutil.rmtree(tmp, ignore_errors=True)
            extra["options"] = opts
            if row not in ("completion_pl", *INPUT_ROWS) and method == "supervised":
                shared.update(probs=probs, extra=extra)
        distance, inside = prior.interpolation.distance, prior.interpolation.inside
        if row != INTERPOLATION:
            if row in INPUT_ROWS:  # the network alone too: does it use what it sees?
                alone = score_hidden(probs.argmax(0).astype(np.uint8), volume.labels, kept, axis, num_classes,
                                     volume.spacing_kji, class_names)
                extra["network_dice"] = alone["dice"]
            if row in (COMPLETION, "completion_pl", "completion_lcc", *INPUT_ROWS):
                probs = prior.fuse(probs)
                extra = {**extra, "prior": prior.fit}
            elif row == "completion_inside":
                probs = prior.fuse(probs, beyond=False)
            elif row == "completion_shape":
                shaped = ShapePrior.build(sparse.labels, axis, kept, num_classes,  # type: ignore[arg-type]
                                          CompletionConfig(interpolation="shape"))
                probs = shaped.fuse(probs)
                extra = {**extra, "prior": shaped.fit}
            elif row == "prior":
                probs = prior.alone()
            pred = probs.argmax(0).astype(np.uint8)
            confidence = probs.max(0)
            if row == "completion_lcc":
                pred = largest_components(pred, num_classes)
        seconds = time.perf_counter() - t
        score = score_hidden(pred, volume.labels, kept, axis, num_classes, volume.spacing_kji, class_names)
        if confidence is not None:
            extra["slices"] = slice_scores(pred, volume.labels, confidence, kept, axis, distance, inside)
        records.append({**base, "row": row, **score, "seconds": seconds, **extra})
    return records


def largest_components(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``labels`` (K, J, I) with each class cut to its largest 3D connected component (26-connected, as
    MONAI's ``KeepLargestConnectedComponent`` by default; SciPy's labelling, which the engine already needs,
    instead of the scikit-image MONAI would need for it); the voxels cut become background."""
    from scipy import ndimage

    out = labels.copy()
    for c in range(1, num_classes):
        components, n = ndimage.label(labels == c, structure=np.ones((3, 3, 3), bool))
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return out


# -- datasets ---------------------------------------------------------------------------------
def list_dataset(root: str | Path, dataset: str) -> tuple[list[str], list[str]]:
    """(target volume names in benchmark order, every volume name) of ``root`` (``.../la`` or ``.../acdc``)."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise InputError(
            f"no images/ folder: expected the {dataset.upper()} data of ../shared/data (see its README)", root
        )
    names = sorted(volume_name(p) for p in (root / "images").glob("*.nii.gz"))
    splits = json.loads((root / "splits.json").read_text()) if (root / "splits.json").exists() else {}
    if dataset == "acdc" and "val" in splits:
        targets = [n for n in names if n.split("_")[0] in set(splits["val"])]
    elif dataset == "la" and "volumes" in splits:
        targets = [n for n in splits["volumes"] if n in names]
    else:
        targets = names
    return targets, names


def named_volumes(cases: list[str], names: list[str], root: Path) -> list[str]:
    """The volumes ``--cases`` names, in its order; an :class:`InputError` for any not among ``names`` (the
    dataset's volumes, :func:`list_dataset`) of ``root``."""
    missing = [c for c in cases if c not in names]
    if missing:
        raise InputError(f"volume(s) {missing} not in {root / 'images'}")
    return list(cases)


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """What every trained row of one run shares (stored in each record; a re-run must match it)."""
    return {
        "iterations": args.iterations,
        "size": args.size,
        "batch_labeled": args.batch,
        "batch_unlabeled": args.batch,
        "lr": args.lr,
        "optimizer": "sgd",
        "seed": args.seed,
        "threads": args.threads,
        "recipe": method_options(args),
        "max_unlabeled": args.max_unlabeled,
        "axis": 2,
        **({"precision": args.precision} if args.precision != "auto" else {}),
    }


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options of the semi-supervised rows: our short-budget recipe (or none with ``--paper-defaults``),
    then every ``--option KEY=VALUE``."""
    return {**({} if args.paper_defaults else RECIPE), **dict(args.option)}


def budget_text(b: dict[str, Any]) -> str:
    recipe = ", ".join(f"{k} {v}" for k, v in b["recipe"].items()) or "the paper defaults"
    return (
        f"budget: {b['iterations']} iterations, {b['size']}x{b['size']}, batch "
        f"{b['batch_labeled']}+{b['batch_unlabeled']}, "
        f"SGD lr {b['lr']} poly, seed {b['seed']}, semi-supervised rows with {recipe}, last checkpoint"
    )


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the benchmark as ``args`` says, appending to ``args.out``; returns every record of the file."""
    dataset = args.dataset
    class_names = DATASETS[dataset]
    root = Path(args.data) if args.data else default_data_root() / dataset
    targets, names = list_dataset(root, dataset)
    targets = named_volumes(args.cases, names, root) if args.cases else targets
    targets = targets[: args.volumes] if args.volumes else targets
    b = budget(args)
    out = Path(args.out)
    old = [r for r in read_jsonl(out) if r.get("dataset") == dataset]
    if any(r.get("budget") != json.loads(json.dumps(b)) for r in old):
        raise InputError("holds results of another budget; write to a new --out so every row shares one budget", out)
    done = {(r["volume"], r["k"], r["row"]) for r in old}
    rows = [INTERPOLATION, "supervised", COMPLETION] + [m for m in args.methods if m != "supervised"]
    rows += args.candidates
    if INTERPOLATION in rows:  # fail early when ITK is missing, and keep its (slow, lazy) loading out of the timings
        toy = np.zeros((3, 8, 8), np.uint8)
        toy[[0, 2], 2:6, 2:6] = 1
        contour_interpolation(toy, 2)
    config = bench_train_config(
        args, checkpoint_every=args.iterations, log_every=max(1, args.iterations), threads=args.threads
    )
    options = method_options(args)
    print(budget_text(b), flush=True)
    unlabeled_cache: dict[str, Volume] = {}
    for name in targets:
        todo = [(k, [r for r in rows if (name, k, r) not in done]) for k in args.k]
        todo = [(k, rs) for k, rs in todo if rs]
        if not todo:
            continue
        volume = load_volume(root / "images" / f"{name}.nii.gz", root / "labels" / f"{name}.nii.gz", len(class_names))
        others: list[Volume] = []
        if any(r not in (INTERPOLATION, "supervised") for _, rs in todo for r in rs):
            other_names = [n for n in names if n != name][: args.max_unlabeled]
            for n in other_names:
                if n not in unlabeled_cache:
                    unlabeled_cache[n] = load_volume(root / "images" / f"{n}.nii.gz")  # no labels: unlabelled data
            others = [unlabeled_cache[n] for n in other_names]
        for k, rs in todo:
            for rec in run_case(volume, others, k, rs, config, options, class_names, 2, args.runs, b, args.reuse_runs):
                rec.update(dataset=dataset, budget=b)
                append_jsonl(out, rec)
                print(
                    json.dumps(
                        {
                            "volume": name,
                            "k": k,
                            "row": rec["row"],
                            "dice": round(rec["dice"], 4),
                            "seconds": round(rec["seconds"], 1),
                        }
                    ),
                    flush=True,
                )
    records = [r for r in read_jsonl(out) if r.get("dataset") == dataset]
    if args.plot and records:
        from .plots import plot_dice_vs_k

        plot_dice_vs_k(records, args.plot, title=f"{dataset.upper()}: {budget_text(b)}")
    return records


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """Mean (and spread) over volumes of the hidden-slice Dice and HD95 per row and k."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["row"], int(r["k"])), []).append(r)
    order = {INTERPOLATION: 0, "supervised": 1, COMPLETION: 2, **{c: 3 + i for i, c in enumerate(CANDIDATES)}}
    lines = []
    for (row, k), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 2), kv[0][0], kv[0][1])):
        d = np.array([r["dice"] for r in rs], dtype=float) * 100
        h = np.array([np.nan if r["hd95_vox"] is None else r["hd95_vox"] for r in rs], dtype=float)
        hmean = float(np.nanmean(h)) if np.isfinite(h).any() else None
        lines.append(
            [row, k, len(rs), float(d.mean()), float(d.std()), hmean, float(np.mean([r["seconds"] for r in rs]))]
        )
    return format_table(["row", "k", "volumes", "Dice %", "std", "HD95 vox", "seconds"], lines, ".1f")


def wins_table(records: Sequence[dict[str, Any]], against: str = INTERPOLATION) -> str:
    """Per row and k: on how many volumes the row's Dice beats ``against``'s."""
    by = {(r["row"], int(r["k"]), r["volume"]): r["dice"] for r in records}
    lines = []
    for row in sorted({r for r, _, _ in by if r != against}):
        for k in sorted({k for r, k, _ in by if r == row}):
            vols = [v for r, kk, v in by if r == row and kk == k and (against, k, v) in by]
            wins = sum(by[(row, k, v)] > by[(against, k, v)] for v in vols)
            lines.append([row, k, f"{wins}/{len(vols)}"])
    return format_table(["row", "k", f"beats {against}"], lines, ".1f")


def slices_table(records: Sequence[dict[str, Any]]) -> str:
    """Per row and k: mean per-slice Dice by distance to the nearest kept slice, and the mean Spearman
    correlation between a slice's review confidence and its Dice (:func:`slice_scores`)."""
    names = [n for _, _, n in DISTANCE_BINS] + ["outside"]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        if "slices" in r:
            groups.setdefault((r["row"], int(r["k"])), []).append(r["slices"])
    lines = []
    for (row, k), ss in sorted(groups.items()):
        cells: list[Any] = [row, k]
        for n in names:
            total = sum(s["by_distance"][n][0] * s["by_distance"][n][1] for s in ss if n in s["by_distance"])
            count = sum(s["by_distance"][n][1] for s in ss if n in s["by_distance"])
            cells.append(100 * total / count if count else None)
        rho = [s["spearman_confidence_dice"] for s in ss if s["spearman_confidence_dice"] is not None]
        cells.append(float(np.mean(rho)) if rho else None)
        lines.append(cells)
    return format_table(["row", "k", *(f"d {n}" for n in names), "Spearman"], lines, ".2f")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from semiseg.methods import METHODS

    p.add_argument("--dataset", choices=sorted(DATASETS), default="la")
    p.add_argument("--data", help="the dataset folder (default: ../shared/data/<dataset>)")
    p.add_argument(
        "--volumes",
        type=int,
        default=0,
        help="score the first N volumes (LA: splits' order; ACDC: val patients' frames); 0 = all",
    )
    p.add_argument("--cases", type=str_list, help="comma-separated volume names to score instead")
    p.add_argument("--k", type=int_list, default=[1, 2, 3, 5], help="labelled slices kept per volume, e.g. 1,2,3,5")
    p.add_argument(
        "--methods",
        type=str_list,
        default=["unimatch"],
        help=f"semi-supervised rows (of {', '.join(sorted(METHODS))}); interpolation and supervised always run",
    )
    p.add_argument(
        "--candidates",
        type=str_list,
        nargs="?",
        const=list(CANDIDATES),
        default=[],
        help=f"add the rows {', '.join(CANDIDATES)} (see CANDIDATES), or the comma-separated ones named",
    )
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=4, help="labelled and unlabelled slices per step")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="the forward passes' precision")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--max-unlabeled", type=int, help="use at most N other volumes as unlabelled data")
    p.add_argument(
        "--paper-defaults", action="store_true", help="the methods' paper defaults instead of our short-budget recipe"
    )
    add_option_argument(p, "an option of the semi-supervised rows, over the recipe (repeatable), e.g. warmup=0.5")
    p.add_argument(
        "--out", default="bench-results/clinician.jsonl", help="JSONL results (appended; a re-run skips finished rows)"
    )
    p.add_argument("--plot", help="PNG of Dice against k (default: beside --out)")
    p.add_argument(
        "--runs", help="keep each run's checkpoint and progress under this folder (default: temporary, removed)"
    )
    p.add_argument(
        "--reuse-runs",
        action="store_true",
        help="with --runs: predict again with a network that folder already holds for the same budget instead of "
        "training it again (to re-score the prior's rows after a change to the completion)",
    )


def main(args: argparse.Namespace) -> int:
    check_methods(args.methods)
    if args.reuse_runs and not args.runs:
        raise InputError("--reuse-runs needs --runs: the folder whose trained networks are predicted again")
    if args.plot is None:
        args.plot = str(Path(args.out).with_suffix(".png"))
    records = run(args)
    print()
    print(budget_text(budget(args)))
    print(f"hidden-slice scores ({args.dataset.upper()}, mean over volumes; plot: {args.plot})")
    print(summary_table(records))
    print("\nvolumes on which each row beats interpolation")
    print(wins_table(records))
    print(
        "\nper-slice foreground Dice % by distance to the nearest kept slice (slices holding structure in either map), "
        "and the mean Spearman correlation of slice confidence with slice Dice"
    )
    print(slices_table(records))
    return 0
