"""How good are reference-guided pseudo-labels, and which pixels should count? (the measurement
behind the defaults of ``semiseg.methods.refguided``).

Takes a trained checkpoint (e.g. the ``supervised`` row of the ACDC benchmark, whose run folder
``semiseg bench acdc`` keeps under ``--runs``), uses every slice of the ``labeled_3`` patients as
references and the slices of the next ``--patients`` train patients as unlabelled queries with
their expert labels hidden, and prints per class (RV/Myo/LV) Dice of the reference labels and of
the network's own argmax against the expert labels, then for each selection rule the coverage,
accuracy and recall of the selected pixels per class.

Run:
    semiseg bench acdc --labeled labeled_3 --iterations 1000 --size 128 --batch 4 --methods supervised \\
        --out bench-results/acdc3.jsonl --runs bench-results/runs
    python benchmarks/refguided_labels.py bench-results/runs/labeled_3-supervised/checkpoint.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from semiseg.blocks.refbank import (
    ReferenceGuidedLabeler,
    grid_references,
    pool_embeddings,
    scores_to_label,
    upsample_scores,
)
from semiseg.io.slices import build_slice_sets, load_volume
from semiseg.models.unet import UNet2D
from semiseg.training.checkpoint import load_checkpoint
from semiseg_bench.acdc import _cases
from semiseg_bench.common import default_data_root

CLASSES = ("RV", "Myo", "LV")


def slices(root: Path, patients: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    vols = [load_volume(i, l, 4) for i, l in _cases(root, patients)]
    sset, _, _ = build_slice_sets(vols, [], axis=2, size=size, min_val_slices=10**9)
    x = torch.as_tensor(sset.images).float()
    return (x if x.dim() == 4 else x[:, None]), torch.as_tensor(sset.labels).long()


def dice(pred: torch.Tensor, ref: torch.Tensor) -> list[float]:
    return [
        float(2 * ((pred == c) & (ref == c)).sum() / ((pred == c).sum() + (ref == c).sum()).clamp_min(1))
        for c in (1, 2, 3)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--data", default=str(default_data_root() / "acdc"))
    p.add_argument("--patients", type=int, default=6, help="unlabelled train patients used as queries")
    p.add_argument("--stride", type=int, default=4, help="feature_stride of the embedding grid")
    a = p.parse_args(argv)
    root = Path(a.data)
    splits = json.loads((root / "splits.json").read_text())
    state = load_checkpoint(a.checkpoint)
    mc, size = state["model_config"], int(state["train_config"]["size"])
    net = UNet2D(1, int(state["num_classes"]), mc["features"], mc["dropout"])
    net.load_state_dict(state["model"])
    net.eval()
    x_l, y_l = slices(root, splits["labeled_3"], size)
    x_u, y_u = slices(root, [q for q in splits["train"] if q not in splits["labeled_3"]][: a.patients], size)
    with torch.no_grad():
        _, f_l = net.decode(net.encode(x_l), return_features=True)
        logits_u, f_u = net.decode(net.encode(x_u), return_features=True)
        conf, own = logits_u.softmax(1).max(1)
        e_l, e_u = pool_embeddings(f_l, a.stride), pool_embeddings(f_u, a.stride)
        refs = grid_references(e_l, y_l, 4)
        labeler = ReferenceGuidedLabeler(4, e_l.shape[1], bank_size=len(refs[1]), per_update=len(refs[1]))
        labeler.update(*refs)
        ref, margin = scores_to_label(upsample_scores(labeler.class_scores(e_u, chunk=4096), (size, size)))
    print(f"{x_l.shape[0]} reference slices, {x_u.shape[0]} query slices, {size}x{size}, stride {a.stride}")
    print(
        "Dice against the expert labels (RV/Myo/LV): reference labels",
        [round(v, 2) for v in dice(ref, y_u)],
        "network argmax",
        [round(v, 2) for v in dice(own, y_u)],
        f"agree on {float((ref == own).float().mean()):.1%} of pixels",
    )
    rules = {
        "alone, margin >= 0.05": (ref, margin >= 0.05),
        "alone, margin >= 0.02": (ref, margin >= 0.02),
        "agree": (ref, ref == own),
        "agree, confidence >= 0.95": (ref, (ref == own) & (conf >= 0.95)),
        "network, confidence >= 0.95": (own, conf >= 0.95),
    }
    print("| rule | pixels kept | " + " | ".join(f"{c} kept / accuracy / recall" for c in CLASSES) + " |")
    print("|---|---|" + "---|" * len(CLASSES))
    for name, (target, keep) in rules.items():
        cells = []
        for c in (1, 2, 3):
            sel = keep & (target == c)
            acc = float((y_u[sel] == c).float().mean()) if sel.any() else float("nan")
            rec = float((sel & (y_u == c)).sum() / (y_u == c).sum().clamp_min(1))
            cells.append(f"{int(sel.sum())} / {acc:.0%} / {rec:.0%}")
        print(f"| {name} | {float(keep.float().mean()):.1%} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
