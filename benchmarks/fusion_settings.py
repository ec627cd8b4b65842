"""The fusion's settings, re-scored on the networks a clinician benchmark kept.

The fusion of :mod:`semiseg.completion.fusion` has four settings that are the same for every volume: the
exponent of the network's probabilities (``TEMPERATURE``), the factor on the fitted width of the prior
(``SHARPEN``), whether the outermost labelled shape is carried along the image beyond the labelled range
(the registration back end's ``Interpolation.carried``), and whether an outermost labelled slice that lacks a
class ends that class beyond it (``CLASS_ENDS``). The network does not depend on them, so they are compared
on the ``supervised`` networks that ``semiseg bench clinician ... --runs DIR`` kept, without training again: for
every volume and k of that run, the prior of the same k slices is built once and the network's probabilities
are fused with each setting and scored as the benchmark scores (3D Dice on the hidden slices).

    OMP_NUM_THREADS=1 semiseg bench clinician --dataset la --volumes 0 --k 1,2,3,5,8 --iterations 600 --size 96 \\
        --batch 4 --threads 1 --methods supervised --out bench-results/clinician_quick_la.jsonl \\
        --runs bench-results/runs_quick_la
    OMP_NUM_THREADS=1 python benchmarks/fusion_settings.py --dataset la --runs bench-results/runs_quick_la \\
        --k 1,2,3,5,8 --temperatures 0.1,0.15,0.2,0.25 --sharpen 0.35,0.5

Prints the mean Dice per setting and k (over the volumes the run holds for that k), and for each setting the
mean paired difference against the first one with the volumes it makes better and worse.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import numpy as np

from semiseg.completion import ShapePrior
from semiseg.completion.fusion import CLASS_ENDS, fuse
from semiseg.errors import InputError
from semiseg.inference import Predictor
from semiseg.io.slices import labeled_slice_indices, load_volume, put_slices, take_slices
from semiseg_bench.clinician import DATASETS, keep_slices, list_dataset, named_volumes, score_hidden, sparsify
from semiseg_bench.common import default_data_root, float_list, format_table, int_list, str_list

AXIS = 2


def settings(args: argparse.Namespace) -> list[tuple[float, float, bool, bool]]:
    carry = {"on": [True], "off": [False], "both": [True, False]}[args.carry]
    ends = {"class": [True], "volume": [False], "both": [CLASS_ENDS, not CLASS_ENDS]}[args.ends]
    return list(itertools.product(args.temperatures, args.sharpen, carry, ends))


def run(args: argparse.Namespace) -> dict[tuple[tuple[float, float, bool, bool], int], dict[str, float]]:
    """``{(setting, k): {volume: Dice}}`` over the volumes whose ``supervised`` network the run kept."""
    class_names = DATASETS[args.dataset]
    root = Path(args.data) if args.data else default_data_root() / args.dataset
    targets, names = list_dataset(root, args.dataset)
    targets = targets[: args.volumes] if args.volumes else targets
    if args.cases:  # any volumes of the dataset, as semiseg bench clinician --cases takes them
        targets = named_volumes(args.cases, names, root)
    runs = Path(args.runs)
    scores: dict[tuple[tuple[float, float, bool, bool], int], dict[str, float]] = {}
    for name in targets:
        trained = {k: runs / name / f"k{k}" / "supervised" for k in args.k}
        trained = {k: d for k, d in trained.items() if (d / "bench_training.json").is_file()}
        if not trained:
            continue
        volume = load_volume(root / "images" / f"{name}.nii.gz", root / "labels" / f"{name}.nii.gz", len(class_names))
        for k, run_dir in trained.items():
            kept = keep_slices(labeled_slice_indices(volume.labels, AXIS), k)
            sparse = sparsify(volume.labels, AXIS, kept)
            prior = ShapePrior.build(sparse, AXIS, kept, len(class_names), image=volume.image)
            probs = Predictor(run_dir / "checkpoint.pt", "cpu").probabilities(volume.image, AXIS)
            net = np.stack([take_slices(p, AXIS) for p in probs])
            still = dataclasses.replace(prior.interpolation, carried=np.zeros_like(prior.interpolation.carried))
            for temperature, sharpen, carry, class_ends in settings(args):
                interp = prior.interpolation if carry else still
                fused = fuse(net, interp, prior.scale, temperature, sharpen=sharpen, class_ends=class_ends)
                pred = np.stack([put_slices(p, AXIS) for p in fused]).argmax(0).astype(np.uint8)
                score = score_hidden(pred, volume.labels, kept, AXIS, len(class_names), volume.spacing_kji, class_names)
                scores.setdefault(((temperature, sharpen, carry, class_ends), k), {})[name] = 100 * score["dice"]
        print(f"{name}: k = {', '.join(str(k) for k in trained)}", flush=True)
    return scores


def tables(args: argparse.Namespace, scores) -> str:
    grid = settings(args)
    ks = [k for k in args.k if (grid[0], k) in scores]
    label = {
        s: f"T {s[0]:g}, sharpen {s[1]:g}, {'carried' if s[2] else 'still'}, {'class' if s[3] else 'volume'} ends"
        for s in grid
    }
    mean = [[label[s], *(float(np.mean(list(scores[(s, k)].values()))) for k in ks)] for s in grid]
    paired = []
    for s in grid:
        row = [label[s]]
        for k in ks:
            base, this = scores[(grid[0], k)], scores[(s, k)]
            diff = [this[v] - base[v] for v in base]
            better, worse = sum(d > 0 for d in diff), sum(d < 0 for d in diff)
            row.append(f"{np.mean(diff):+.2f} ({better}/{len(diff)}, {worse} worse)")
        paired.append(row)
    n = ", ".join(f"k={k}: {len(scores[(grid[0], k)])}" for k in ks)
    return (
        f"{args.dataset.upper()}: Dice % on the hidden slices, mean over volumes ({n})\n"
        + format_table(["setting", *(f"k={k}" for k in ks)], mean, ".2f")
        + "\n\nagainst the first setting: mean paired difference (volumes better / all, volumes worse)\n"
        + format_table(["setting", *(f"k={k}" for k in ks)], paired)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="la")
    p.add_argument("--data", help="the dataset folder (default: ../shared/data/<dataset>)")
    p.add_argument("--runs", required=True, help="the --runs folder of a semiseg bench clinician run")
    p.add_argument("--k", type=int_list, default=[1, 2, 3, 5])
    p.add_argument("--volumes", type=int, help="only the first N volumes (default: all the run holds)")
    p.add_argument("--temperatures", type=float_list, default=[0.25], help="exponents of the network's probabilities")
    p.add_argument("--sharpen", type=float_list, default=[0.5], help="factors on the prior's fitted width")
    p.add_argument("--carry", choices=["on", "off", "both"], default="both",
                   help="carry the outermost shape along the image beyond the labelled range")
    p.add_argument("--ends", choices=["class", "volume", "both"], default="class" if CLASS_ENDS else "volume",
                   help="beyond an outermost labelled slice, end each class it lacks (class) or only every class "
                        "when it holds none (volume); default: the engine's CLASS_ENDS")
    p.add_argument("--cases", type=str_list, help="these volumes instead (comma-separated names, e.g. train volumes)")
    args = p.parse_args()
    try:
        scores = run(args)
    except InputError as err:  # a missing volume or data folder: said, exit 2
        p.error(str(err))
    if not scores:
        p.error(f"no trained supervised network under {args.runs} for k = {args.k}")
    print(tables(args, scores))


if __name__ == "__main__":
    main()
