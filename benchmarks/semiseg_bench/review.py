"""``semiseg bench review``: the correction loop of a study, simulated (issue 12).

A study is ``m`` scans with ``k`` labelled slices each (the structure's slices spread evenly, as in the
clinician benchmark). The loop trains one network on all of them, completes each scan (the network
fused with the scan's shape prior, :mod:`semiseg.completion`), then repeats ``--corrections`` times:

1. choose a slice of the study that is not labelled yet;
2. the correction: its pseudo-labels are replaced by the expert's labels, and the slice is accepted
   (it joins that scan's labelled slices, an empty one as a checked-empty slice);
3. retrain, warm-started from the last network, for ``--retrain-iterations``.

After the first training and after every correction it records the study's Dice (every slice of every
study scan, labelled ones included, as the user ends up with them), the Dice of the held-out scans
(the network alone, as ``semiseg predict`` gives them) and the wall-clock seconds so far of training and
completion (the user's wait; the scoring of held-out and development scans is not counted). Both keep the
classes a run of the study would keep to their largest island (the job's ``keep_largest_island``
``"auto"``, :mod:`semiseg.inference.islands`; ``--no-islands``: none); the held-out scans' Dice of the
network's argmax alone is recorded beside it (``held_out_dice_raw``).

Strategies, at the same number of slices:

- ``review``: the first slice of the study's review list, as the user sees it: the highest expected gain
  (:func:`semiseg.inference.review.expected_gain`, with the committee of each scan's fused result and the
  network alone);
- ``confidence``: the least confident slice of the whole study (the review list's order without gains, the
  mean confidence over the slice's region of interest; the list's order until session 10);
- ``uncertainty``: the slice with the most uncertain pixels, ``sum(1 - confidence)`` over the slice (a
  candidate: the mean confidence favours small, hard slices whose correction moves the Dice little);
- ``random``: a slice drawn uniformly from the study's unlabelled slices (seeded);
- ``interpolation``: no network: Slicer's *Fill between slices* (ITK's morphological contour
  interpolation) of each scan from the slices the first of the loops above that ran had labelled at that
  count. Nothing beyond the first and last
  labelled slice of a scan.

Datasets: ACDC (the study is the first ``m`` train patients, both frames each; the val patients are
held out) and LA (the study is the first ``m`` volumes of ``splits.json``; the next ``--held-out`` are held out).
``--dev N`` takes the last N patients (ACDC) or volumes (LA) of the unlabelled pool out of it and scores them
beside the held-out scans (``dev_dice``, ``dev_dice_raw``): the development scans on which a setting of this
benchmark (``--option``, a method option over the recipe's) is chosen before the held-out scans are looked at.
Our choices: a slice is "the least confident" by the review statistic, ties to the lowest (scan, index);
the retraining keeps the optimiser's schedule of a fresh run of ``--retrain-iterations``, and, as a
retrain of the product (``init_checkpoint``), neither warms up nor ramps up (the ``cpu`` recipe's
:data:`~semiseg.training.recipes.WARM_START`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from semiseg.completion import ShapePrior
from semiseg.completion.interpolation import filled_labels
from semiseg.errors import InputError
from semiseg.inference import Predictor, outputs, predict_volume, review_slices
from semiseg.inference.islands import one_piece_classes
from semiseg.inference.metrics import dice
from semiseg.io.slices import SliceSet, Volume, build_slice_sets, labeled_slice_indices, load_volume
from semiseg.training import TrainData, Trainer
from semiseg.training.progress import ProgressLog

from .common import (
    add_option_argument,
    append_jsonl,
    bench_train_config,
    check_methods,
    default_data_root,
    read_jsonl,
    str_list,
)

__all__ = ["STRATEGIES", "Scan", "load_study", "run_strategy", "add_arguments", "main"]

STRATEGIES = ("review", "confidence", "uncertainty", "random", "interpolation")
LOOPS = STRATEGIES[:-1]
AXIS = 2


@dataclasses.dataclass
class Scan:
    """A study scan: the volume with its expert labels, and the slices the user has labelled so far."""

    volume: Volume
    labeled: set[int]

    def as_labeled(self) -> Volume:
        """The volume as the user has labelled it: expert labels on the labelled slices only."""
        assert self.volume.labels is not None
        labels = np.zeros_like(self.volume.labels)
        idx = sorted(self.labeled)
        labels[idx] = self.volume.labels[idx]
        empty = [i for i in idx if not labels[i].any()]
        return dataclasses.replace(self.volume, labels=labels, extra_labeled={AXIS: empty})


def load_study(
    root: Path, dataset: str, scans: int, k: int, held_out: int, unlabeled: int = 0, dev: int = 0
) -> tuple[list[Scan], list[Volume], list[Volume], int, list[Volume]]:
    """(study scans with ``k`` labelled slices each, held-out volumes, extra unlabelled volumes, classes,
    development volumes).

    ACDC: the study is the protocol's ``labeled_<m>`` patients where ``splits.json`` has them (3 and 7), else
    the first ``m`` train patients; the other train patients are the unlabelled pool, the val patients are
    held out. LA: the first ``m`` volumes of ``splits.json``, the next ``held_out`` held out, the rest the
    pool. ``dev``: the last ``dev`` patients (ACDC) or volumes (LA) of the pool leave it as development
    volumes, with their labels. ``unlabeled``: volumes of the pool used as unlabelled data (-1: all).
    """
    from .clinician import keep_slices

    splits = json.loads((root / "splits.json").read_text())
    if dataset == "acdc":

        def frames(patients: list[str]) -> list[tuple[Path, Path]]:
            return [
                (p, root / "labels" / p.name)
                for pt in patients
                for p in sorted((root / "images").glob(f"{pt}_frame*.nii.gz"))
            ]

        chosen = splits.get(f"labeled_{scans}") or splits["train"][:scans]
        pool = [p for p in splits["train"] if p not in chosen]
        kept = len(pool) - dev
        study_files, held_files = frames(chosen), frames(splits["val"][:held_out])
        pool_files, dev_files = frames(pool[:kept]), frames(pool[kept:])
        classes = 4
    elif dataset == "la":
        names = splits["volumes"]
        pair = [(root / "images" / f"{n}.nii.gz", root / "labels" / f"{n}.nii.gz") for n in names]
        study_files, held_files, pool_files = pair[:scans], pair[scans : scans + held_out], pair[scans + held_out :]
        kept = len(pool_files) - dev
        pool_files, dev_files = pool_files[:kept], pool_files[kept:]
        classes = 2
    else:
        raise InputError(f"dataset must be acdc or la, got {dataset!r}")
    if dev < 0 or kept < 1:
        raise InputError(f"--dev must be at least 0 and leave the unlabelled pool a volume, got {dev}")
    study = []
    for image, labels in study_files:
        volume = load_volume(image, labels, classes)
        structure = labeled_slice_indices(volume.labels, AXIS)  # type: ignore[arg-type]
        study.append(Scan(volume, set(keep_slices(structure, k))))
    held = [load_volume(image, labels, classes) for image, labels in held_files]
    extra = [load_volume(image) for image, _ in (pool_files if unlabeled < 0 else pool_files[:unlabeled])]
    return study, held, extra, classes, [load_volume(image, labels, classes) for image, labels in dev_files]


def held_out_dice(predictor: Predictor, held: list[Volume], classes: int) -> tuple[float, float]:
    """Mean over classes of the class's Dice averaged over the held-out volumes (as ``semiseg bench acdc``): as
    ``semiseg predict`` gives them (the predictor's classes kept to their largest island), and the network's
    argmax alone."""
    kept, raw = [], []
    for v in held:
        probs = predictor.probabilities(v.image, AXIS)
        for scores, pred in ((kept, outputs(probs, predictor.islands, AXIS)["labels"]), (raw, probs.argmax(0))):
            scores.append([dice(pred == c, v.labels == c) for c in range(1, classes)])
    return tuple(float(np.mean(np.nanmean(np.array(s), axis=0))) for s in (kept, raw))  # type: ignore[return-value]


def study_islands(study: list[Scan], classes: int) -> list[int]:
    """The classes a run of this study keeps to their largest island: ``"auto"`` of the job (as
    :mod:`semiseg.job.prepare` decides it, on each scan's labelled slices filled between, shape-based)."""
    filled = [filled_labels(s.as_labeled().labels, AXIS, sorted(s.labeled), classes) for s in study]  # type: ignore[arg-type]
    return one_piece_classes(filled, classes)


def _train_data(study: list[Scan], extra: list[Volume], size: int, classes: int) -> TrainData:
    train, _, unlabeled = build_slice_sets([s.as_labeled() for s in study], extra, AXIS, size, min_val_slices=10**9)
    empty = SliceSet(train.images[:0], train.labels[:0], [])  # type: ignore[index]
    return TrainData(train, empty, unlabeled, classes)


def _mean_dice(pred: np.ndarray, ref: np.ndarray, classes: int) -> float:
    return float(np.mean([dice(pred == c, ref == c) for c in range(1, classes)]))


def _complete(predictor: Predictor | None, scan: Scan, classes: int) -> dict[str, np.ndarray]:
    """The scan as the user gets it: the network fused with its prior, or the interpolation alone."""
    sparse = scan.as_labeled()
    kept = sorted(scan.labeled)
    if predictor is None:
        from .clinician import contour_interpolation

        return {"labels": contour_interpolation(sparse.labels, AXIS)}  # type: ignore[arg-type]
    # the product's prior, which follows the image (section 2b's table predates it: docs/BENCHMARKS.md)
    prior = ShapePrior.build(sparse.labels, AXIS, kept, classes, image=scan.volume.image)  # type: ignore[arg-type]
    result = predict_volume(predictor, scan.volume, AXIS, prior, kept)
    return {k: result[k] for k in ("labels", "confidence", "gain")}


def _choose(strategy: str, study: list[Scan], done: list[dict[str, np.ndarray]], rng: np.random.Generator):
    """(scan index, slice index) of the next correction."""
    if strategy == "random":
        free = [
            (s, i) for s, scan in enumerate(study) for i in range(scan.volume.num_slices(AXIS)) if i not in scan.labeled
        ]
        return free[int(rng.integers(len(free)))]
    if strategy == "uncertainty":
        mass = [
            (-float((1.0 - np.moveaxis(out["confidence"], 2 - AXIS, 0)[i]).sum()), s, i)
            for s, (scan, out) in enumerate(zip(study, done))
            for i in range(scan.volume.num_slices(AXIS))
            if i not in scan.labeled
        ]
        _, s, i = min(mass)
        return s, i
    entries = []
    for s, (scan, out) in enumerate(zip(study, done)):
        gain = out["gain"] if strategy == "review" else None
        for e in review_slices(out["labels"], out["confidence"], AXIS, scan.labeled, gain):
            if not e["labeled"]:
                entries.append((-e["gain"] if gain is not None else e["confidence"], s, e["index"]))
    _, s, i = min(entries)
    return s, i


def run_strategy(
    args: argparse.Namespace, strategy: str, history: list[list[list[int]]] | None = None
) -> list[dict[str, Any]]:
    """The records of one strategy, ``n`` = 0 .. corrections; ``history``: another strategy's labelled slices per
    scan at each count (for ``interpolation``)."""
    root = Path(args.data) if args.data else default_data_root() / args.dataset
    study, held, extra, classes, dev = load_study(
        root, args.dataset, args.scans, args.k, args.held_out, args.unlabeled, args.dev
    )
    if history is not None and len(history) <= args.corrections:
        raise InputError(f"the interpolation strategy needs the slices of {args.corrections} corrections")
    rng = np.random.default_rng(args.seed)
    records, seconds, model = [], 0.0, None
    for n in range(args.corrections + 1):
        start = time.perf_counter()
        if strategy == "interpolation":
            if history is None:
                raise InputError("the interpolation strategy follows another strategy's slices: run it after one")
            for scan, labeled in zip(study, history[n]):
                scan.labeled = set(labeled)
            predictor = None  # no network: the interpolation alone
        else:
            iterations = args.iterations if n == 0 else args.retrain_iterations
            config = bench_train_config(args, checkpoint_every=0, log_every=max(1, iterations), threads=args.threads)
            config = dataclasses.replace(config, iterations=iterations)
            with tempfile.TemporaryDirectory(prefix="semiseg-review-") as tmp:
                trainer = Trainer(
                    config,
                    args.method,
                    {**_options(args.method, iterations, warm_start=n > 0), **dict(args.option)},
                    classes,
                    tmp,
                    meta={"axis": AXIS},
                    log=ProgressLog(None, stream=None),
                )
                if model is not None:
                    trainer.model.load_state_dict(model.state_dict())
                trainer.fit(_train_data(study, extra, args.size, classes))
            model = trainer.model.eval()
            predictor = Predictor.of_model(model, args.size, classes, AXIS, trainer.device)
            predictor.islands = study_islands(study, classes) if args.islands else []
        done = [_complete(predictor, scan, classes) for scan in study]
        seconds += time.perf_counter() - start  # the user's wait: training and completion, not the scoring below
        scored = predictor is not None
        held_dice, held_raw = held_out_dice(predictor, held, classes) if scored and held else (None, None)
        dev_dice, dev_raw = held_out_dice(predictor, dev, classes) if scored and dev else (None, None)
        study_dice = float(
            np.mean([_mean_dice(out["labels"], scan.volume.labels, classes) for scan, out in zip(study, done)])
        )
        records.append(
            {
                "dataset": args.dataset,
                "strategy": strategy,
                "corrections": n,
                "study_dice": study_dice,
                "held_out_dice": held_dice,
                "held_out_dice_raw": held_raw,
                "dev_dice": dev_dice,
                "dev_dice_raw": dev_raw,
                "seconds": round(seconds, 2),
                "labeled": [sorted(scan.labeled) for scan in study],
                "budget": budget(args),
            }
        )
        shown = ("strategy", "corrections", "study_dice", "held_out_dice", "dev_dice", "seconds")
        print(json.dumps({k: records[-1][k] for k in shown}), flush=True)
        if n < args.corrections and strategy != "interpolation":
            s, i = _choose(strategy, study, done, rng)
            study[s].labeled.add(i)  # the correction: the expert's labels of this slice, accepted
    return records


def _options(method: str, iterations: int, warm_start: bool = False) -> dict[str, Any]:
    """The ``cpu`` recipe's method options for a run of ``iterations`` (a short run warms up longer, a
    warm-started one not at all)."""
    from semiseg.training.recipes import apply_recipe

    return apply_recipe("cpu", method, {"iterations": iterations}, {}, warm_start)[2]


def budget(args: argparse.Namespace) -> dict[str, Any]:
    return {
        k: getattr(args, k)
        for k in (
            "scans",
            "k",
            "held_out",
            "method",
            "iterations",
            "retrain_iterations",
            "size",
            "batch",
            "lr",
            "seed",
            "precision",
            "islands",
        )
    } | ({"dev": args.dev} if args.dev else {}) | ({"options": dict(args.option)} if args.option else {})


def plot(records: list[dict[str, Any]], path: str | Path) -> Path:
    from .plots import _pyplot, save_figure

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for strategy in STRATEGIES:
        rows = sorted((r for r in records if r["strategy"] == strategy), key=lambda r: r["corrections"])
        if not rows:
            continue
        axes[0].plot(
            [r["corrections"] for r in rows], [100 * r["study_dice"] for r in rows], marker="o", label=strategy
        )
        if strategy != "interpolation":
            axes[1].plot(
                [r["seconds"] / 60 for r in rows], [100 * r["study_dice"] for r in rows], marker="o", label=strategy
            )
    axes[0].set_xlabel("corrected slices")
    axes[1].set_xlabel("wall-clock minutes (training and completion)")
    for ax in axes:
        ax.set_ylabel("study Dice (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(plt, fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from semiseg.contract import DEFAULT_METHOD, PRECISIONS

    p.add_argument("--dataset", choices=["acdc", "la"], default="acdc")
    p.add_argument("--data", help="the dataset folder (default: ../shared/data/<dataset>)")
    p.add_argument("--scans", type=int, default=3, help="study scans (ACDC: patients, both frames each)")
    p.add_argument("--k", type=int, default=3, help="labelled slices per scan to start from")
    p.add_argument("--held-out", type=int, default=10, help="held-out scans scored with the same network")
    p.add_argument("--unlabeled", type=int, default=-1, help="other scans as unlabelled data (-1: all of the pool)")
    p.add_argument(
        "--dev",
        type=int,
        default=0,
        help="the last N patients (ACDC) or volumes (LA) of the pool, out of the unlabelled data, scored as dev_dice",
    )
    add_option_argument(p, "a method option over the cpu recipe's, in every training (repeatable), e.g. warmup=0")
    p.add_argument("--corrections", type=int, default=10)
    p.add_argument("--strategies", type=str_list, default=list(STRATEGIES))
    p.add_argument("--method", default=DEFAULT_METHOD)
    p.add_argument("--iterations", type=int, default=1000, help="the first training")
    p.add_argument("--retrain-iterations", type=int, default=200, help="each warm-started retraining")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--no-islands",
        dest="islands",
        action="store_false",
        help="leave every island (default: as a run of the study, keep_largest_island 'auto')",
    )
    p.add_argument(
        "--out", default="bench-results/review.jsonl", help="JSONL records (a re-run skips finished strategies)"
    )
    p.add_argument("--plot", help="PNG of the study's Dice against corrections and time (default: beside --out)")


def main(args: argparse.Namespace) -> int:
    check_methods([args.method])
    bad = [s for s in args.strategies if s not in STRATEGIES]
    if bad:
        raise InputError(f"unknown strategies {bad}; valid: {', '.join(STRATEGIES)}")
    out = Path(args.out)
    old = [r for r in read_jsonl(out) if r.get("budget") == json.loads(json.dumps(budget(args)))]
    for strategy in sorted(args.strategies, key=STRATEGIES.index):
        if strategy in {r["strategy"] for r in old}:
            continue
        followed = next((s for s in LOOPS if s in {r["strategy"] for r in old}), None)
        history = (
            [r["labeled"] for r in sorted(old, key=lambda r: r["corrections"]) if r["strategy"] == followed]
            if followed
            else None
        )
        records = run_strategy(args, strategy, history)
        for r in records:
            append_jsonl(out, r)
        old += records
    records = [r for r in read_jsonl(out) if r.get("budget") == json.loads(json.dumps(budget(args)))]
    path = plot(records, args.plot or out.with_suffix(".png"))
    print(f"\nstudy Dice (%) by corrected slices ({args.dataset}, {args.scans} scans x {args.k} slices; plot: {path})")
    counts = sorted({r["corrections"] for r in records})
    print("| strategy | " + " | ".join(str(c) for c in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for strategy in STRATEGIES:
        by = {r["corrections"]: r for r in records if r["strategy"] == strategy}
        if by:
            print(
                f"| {strategy} | "
                + " | ".join(f"{100 * by[c]['study_dice']:.1f}" if c in by else "" for c in counts)
                + " |"
            )
    return 0
