"""Are the structures of ACDC and LA one piece? (the measurement behind ``semiseg.inference.islands``).

For every expert label map of the dataset it prints, per class, how many volumes hold the class in more
than one face-connected 3D island and the smallest share of the class's voxels its largest island
holds; then for the label maps as ``"auto"`` sees them, ``--k`` well-spread slices of the structure (as
in ``semiseg bench clinician``) filled between them (shape-based): in how many studies of ``--study``
consecutive volumes (ACDC: 6, three patients' two frames) ``"auto"`` keeps each class
(:func:`semiseg.inference.islands.one_piece_classes`, threshold :data:`~semiseg.inference.islands.ONE_PIECE_SHARE`),
and in how many single volumes.

Run:
    python benchmarks/islands.py --dataset acdc
    python benchmarks/islands.py --dataset la --k 1,2,3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from semiseg.completion.interpolation import filled_labels
from semiseg.inference.islands import ONE_PIECE_SHARE, island_sizes, one_piece_classes
from semiseg.io.slices import labeled_slice_indices, load_volume
from semiseg_bench.clinician import keep_slices
from semiseg_bench.common import default_data_root, sparsify, str_list

AXIS = 2


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["acdc", "la"], default="acdc")
    p.add_argument("--data", help="the dataset folder (default: ../shared/data/<dataset>)")
    p.add_argument("--k", type=str_list, default=["1", "2", "3"], help="labelled slices per volume for 'auto'")
    p.add_argument("--study", type=int, default=6, help="volumes per study for 'auto'")
    a = p.parse_args()
    root = Path(a.data) if a.data else default_data_root() / a.dataset
    classes = 4 if a.dataset == "acdc" else 2
    files = sorted((root / "labels").glob("*.nii.gz"))
    maps = [load_volume(root / "images" / f.name, f, classes).labels for f in files]
    print(f"{a.dataset}: {len(maps)} expert label maps")
    print("| class | volumes holding it | in more than one island | smallest share of the largest island |")
    print("|---|---|---|---|")
    for c in range(1, classes):
        sizes = [s for s in (island_sizes(m == c) for m in maps) if len(s)]  # type: ignore[operator]
        shares = [float(s[0] / s.sum()) for s in sizes]
        print(f"| {c} | {len(sizes)} | {sum(len(s) > 1 for s in sizes)} | {100 * min(shares):.1f} % |")
    print(f"\n'auto' (largest island >= {100 * ONE_PIECE_SHARE:.0f} % of the class, filled from k slices):")
    studies = [list(range(s, s + a.study)) for s in range(0, len(maps) - a.study + 1, a.study)]
    print(f"| k | {' | '.join(f'class {c}: studies / volumes' for c in range(1, classes))} |")
    print("|---|" + "---|" * (classes - 1))
    for k in (int(x) for x in a.k):
        filled = []
        for labels in maps:
            chosen = keep_slices(labeled_slice_indices(labels, AXIS), k)  # type: ignore[arg-type]
            filled.append(filled_labels(sparsify(labels, AXIS, chosen), AXIS, chosen, classes))  # type: ignore[arg-type]
        by_study, by_volume = np.zeros(classes, int), np.zeros(classes, int)
        for study in studies:
            by_study[one_piece_classes([filled[i] for i in study], classes)] += 1
        for f in filled:
            by_volume[one_piece_classes([f], classes)] += 1
        print(f"| {k} | " + " | ".join(
            f"{by_study[c]} of {len(studies)} / {by_volume[c]} of {len(maps)}" for c in range(1, classes)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
