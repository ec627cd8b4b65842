"""Interpolation alone, three ways: the engine's shape-based and morphological back ends against Slicer's filter.

For every volume of a dataset and each k, the k slices of the clinician benchmark are kept
(``semiseg_bench.clinician.keep_slices``) and the volume is filled in by interpolation only, with

- ``itk``: ITK's MorphologicalContourInterpolator as the clinician benchmark's ``interpolation`` row
  calls it (Slicer's *Fill between slices*);
- ``morphological``: the same filter through the engine (``semiseg.completion.interpolation``);
- ``shape``: the engine's shape-based (signed-distance) interpolation, its default;
- ``registration``: the engine's slice-to-slice registration back end (``semiseg.completion.registration``):
  each bracketing slice's signed distances carried along the image by demons (``--demons-iterations``,
  field smoothing ``--demons-sigma`` pixels, registered at 1/``--demons-shrink`` resolution), then blended.
  The only row that looks at the image.

Scored as the clinician benchmark scores (3D Dice on the hidden slices, mean over volumes). No training:
about a minute per dataset on one core.

    python benchmarks/interpolation.py --dataset la --k 2,3,5,8
    python benchmarks/interpolation.py --dataset acdc --k 2,3,5

``--volumes N`` scores only the first N volumes of the benchmark order (a quick check).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from semiseg.completion.interpolation import interpolate_labels
from semiseg.completion.registration import ITERATIONS, SHRINK, SIGMA, SliceMotion
from semiseg.io.slices import labeled_slice_indices, load_volume, put_slices, take_slices
from semiseg_bench.clinician import DATASETS, contour_interpolation, keep_slices, list_dataset, score_hidden, sparsify
from semiseg_bench.common import default_data_root, format_table, int_list, str_list

BACKENDS = ("itk", "morphological", "shape", "registration")


def run(
    dataset: str, ks: list[int], root: Path, volumes: int | None = None,
    demons: tuple[int, float, int] = (ITERATIONS, SIGMA, SHRINK), backends: tuple[str, ...] = BACKENDS,
) -> list[list]:
    class_names = DATASETS[dataset]
    targets, _ = list_dataset(root, dataset)
    targets = targets[:volumes] if volumes else targets
    scores: dict[tuple[str, int], list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for name in targets:
        volume = load_volume(root / "images" / f"{name}.nii.gz", root / "labels" / f"{name}.nii.gz", len(class_names))
        structure = labeled_slice_indices(volume.labels, 2)
        for k in ks:
            kept = keep_slices(structure, k)
            if len(kept) == len(structure):
                continue
            sparse = sparsify(volume.labels, 2, kept)
            for backend in backends:
                t = time.perf_counter()
                if backend == "itk":
                    pred = contour_interpolation(sparse, 2)
                else:
                    motion = SliceMotion(take_slices(volume.image, 2), *demons) if backend == "registration" else None
                    pred = put_slices(
                        interpolate_labels(take_slices(sparse, 2), kept, len(class_names), backend, motion).labels, 2
                    )
                seconds.setdefault(backend, []).append(time.perf_counter() - t)
                score = score_hidden(pred, volume.labels, kept, 2, len(class_names), volume.spacing_kji, class_names)
                scores.setdefault((backend, k), []).append(100 * score["dice"])
    return [
        [b, *(float(np.mean(scores[(b, k)])) if (b, k) in scores else None for k in ks), float(np.mean(seconds[b]))]
        for b in backends
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="la")
    p.add_argument("--data", help="the dataset folder (default: ../shared/data/<dataset>)")
    p.add_argument("--k", type=int_list, default=[2, 3, 5])
    p.add_argument("--volumes", type=int, help="only the first N volumes (default: all)")
    p.add_argument("--backends", type=str_list, default=list(BACKENDS), help=f"rows (default: {','.join(BACKENDS)})")
    p.add_argument("--demons-iterations", type=int, default=ITERATIONS, help="the registration row's demons iterations")
    p.add_argument("--demons-sigma", type=float, default=SIGMA, help="its smoothing of the field (pixels)")
    p.add_argument("--demons-shrink", type=int, default=SHRINK, help="its registration grid: 1/N of the resolution")
    args = p.parse_args()
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        p.error(f"unknown --backends {unknown}; choose among {', '.join(BACKENDS)}")
    root = Path(args.data) if args.data else default_data_root() / args.dataset
    demons = (args.demons_iterations, args.demons_sigma, args.demons_shrink)
    rows = run(args.dataset, args.k, root, args.volumes, demons, tuple(args.backends))
    print(f"{args.dataset.upper()}: Dice % on the hidden slices, mean over volumes; seconds per volume and k")
    print(format_table(["interpolation", *(f"k={k}" for k in args.k), "seconds"], rows, ".2f"))


if __name__ == "__main__":
    main()
