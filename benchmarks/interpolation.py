"""Interpolation alone, three ways: the engine's shape-based and morphological back ends against Slicer's filter.

For every volume of a dataset and each k, the k slices of the clinician benchmark are kept
(``semiseg_bench.clinician.keep_slices``) and the volume is filled in by interpolation only, with

- ``itk``: ITK's MorphologicalContourInterpolator as the clinician benchmark's ``interpolation`` row
  calls it (Slicer's *Fill between slices*);
- ``morphological``: the same filter through the engine (``semiseg.completion.interpolation``);
- ``shape``: the engine's shape-based (signed-distance) interpolation, its default;
- ``registration`` (a candidate of issue 11 that lost, not in the engine): slice-to-slice registration.
  Each labelled slice's signed distance map is carried slice by slice towards the next labelled slice by
  SimpleITK's fast symmetric-forces demons between neighbouring image slices (``--demons-iterations``,
  Gaussian smoothing of the field ``--demons-sigma`` pixels; intensities scaled by their 1-99th percentiles),
  and the two carried maps are blended by distance as the shape interpolation blends the originals. It
  uses the image, the others only the labels. Between labelled slices only, as the others.

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

from semiseg.completion.interpolation import interpolate_labels, signed_distance
from semiseg.io.slices import labeled_slice_indices, load_volume, put_slices, take_slices
from semiseg_bench.clinician import DATASETS, contour_interpolation, keep_slices, list_dataset, score_hidden, sparsify
from semiseg_bench.common import default_data_root, format_table, int_list, str_list

BACKENDS = ("itk", "morphological", "shape", "registration")


def _demons_step(sdf: np.ndarray, to_image: np.ndarray, from_image: np.ndarray, iterations: int,
                 sigma: float) -> np.ndarray:
    """``sdf`` (on ``from_image``'s slice) carried onto the neighbouring slice ``to_image`` by demons."""
    import SimpleITK as sitk

    fixed, moving = sitk.GetImageFromArray(to_image), sitk.GetImageFromArray(from_image)
    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(iterations)
    demons.SetStandardDeviations(sigma)
    field = sitk.DisplacementFieldTransform(sitk.Cast(demons.Execute(fixed, moving), sitk.sitkVectorFloat64))
    carried = sitk.Resample(sitk.GetImageFromArray(sdf.astype(np.float32)), fixed, field, sitk.sitkLinear,
                            float(sdf.max()))
    return sitk.GetArrayFromImage(carried)


def registration_fill(image: np.ndarray, stack: np.ndarray, kept: list[int], num_classes: int, iterations: int,
                      sigma: float) -> np.ndarray:
    """The ``registration`` row: labels (N, rows, cols) filled between the ``kept`` slices of ``stack`` by
    carrying each bracketing slice's signed distances along the image ``image`` (N, rows, cols)."""
    lo, hi = np.percentile(image, [1, 99])
    image = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
    out = np.zeros_like(stack)
    out[kept] = stack[kept]
    for a, b in zip(kept, kept[1:]):
        depth = np.full((num_classes, b - a - 1, *stack.shape[1:]), np.inf, np.float32)
        for c in range(1, num_classes):
            if not ((stack[a] == c).any() and (stack[b] == c).any()):
                continue  # as the interpolation: a structure between two slices that both hold it
            carried = {}
            for start, stop in ((a, b), (b, a)):
                step = 1 if stop > start else -1
                sdf = np.clip(signed_distance(stack[start] == c), -50, 50)
                for s in range(start + step, stop, step):
                    sdf = _demons_step(sdf, image[s], image[s - step], iterations, sigma)
                    carried[(start, s)] = sdf
            for s in range(a + 1, b):
                w = (s - a) / (b - a)
                depth[c, s - a - 1] = (1 - w) * carried[(a, s)] + w * carried[(b, s)]
        inside = depth.min(0) < 0
        out[a + 1 : b] = np.where(inside, depth.argmin(0), 0)
    return out


def run(dataset: str, ks: list[int], root: Path, volumes: int | None = None, demons: tuple[int, float] = (50, 1.5),
        backends: tuple[str, ...] = BACKENDS) -> list[list]:
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
                elif backend == "registration":
                    filled = registration_fill(take_slices(volume.image, 2).astype(np.float32), take_slices(sparse, 2),
                                               kept, len(class_names), *demons)
                    pred = put_slices(filled, 2)
                else:
                    pred = put_slices(
                        interpolate_labels(take_slices(sparse, 2), kept, len(class_names), backend).labels, 2
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
    p.add_argument("--demons-iterations", type=int, default=50, help="the registration row's demons iterations")
    p.add_argument("--demons-sigma", type=float, default=1.5, help="its smoothing of the field (pixels)")
    args = p.parse_args()
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        p.error(f"unknown --backends {unknown}; choose among {', '.join(BACKENDS)}")
    root = Path(args.data) if args.data else default_data_root() / args.dataset
    rows = run(args.dataset, args.k, root, args.volumes, (args.demons_iterations, args.demons_sigma),
               tuple(args.backends))
    print(f"{args.dataset.upper()}: Dice % on the hidden slices, mean over volumes; seconds per volume and k")
    print(format_table(["interpolation", *(f"k={k}" for k in args.k), "seconds"], rows, ".2f"))


if __name__ == "__main__":
    main()
