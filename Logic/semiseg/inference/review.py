"""The review list: a volume's slices in the order in which a correction pays most.

The order is the slice's *expected gain*: the Dice its correction is expected to add to the volume.
For a class with predicted mask ``Y`` and true mask ``T``, ``1 - Dice = |Y xor T| / (|Y| + |T|)``
exactly, and the symmetric difference is a sum over slices. With ``t`` the probability that a pixel
belongs to the class, the expected disagreement of a pixel is ``|t - y|``; a slice's expected gain is
its sum of ``|t - y|`` over the volume's ``sum(t) + sum(y)``, averaged over the foreground classes
(:func:`expected_gain`; the denominator held fixed, as for one slice of many). This is expected error
reduction (Roy and McCallum, "Toward optimal active learning through sampling estimation of error
reduction", ICML 2001) for the Dice that the user's result is scored by. Choices left open, ours:

- The probabilities ``t``: the network's own, and for a completed labelled volume a committee
  (Seung, Opper and Sompolinsky, "Query by committee", COLT 1992) of the fused result and the network
  alone, the network weighing :data:`COMMITTEE_NETWORK` (:meth:`~semiseg.completion.ShapePrior.outputs`):
  where the user's interpolated labels overrule a network that sees a structure, say the slices of a
  small structure that none of the labelled slices holds, those slices are not taken as sure. The
  fused result alone is sure of such an absence; weighed equally, a network that paints a structure
  on slices far from it, which the fusion rightly removes, would send the list there instead.
- Gains add up across the volumes of a study whose Dice is the volumes' mean: one list sorts them all.
- A class the result lacks in the whole volume counts as lost wherever the probabilities hold some of
  it (its Dice, 0, is then the share of each slice's probability mass): a structure the fusion removed
  is what the list must point at, and we do not guess whether a faint one is really there.

Each entry also carries the slice's *confidence* (shown beside it, and the order of a list without
gains): the mean confidence over the slice's *region of interest*, the pixels predicted as foreground
or whose confidence is below :data:`ROI_CONFIDENCE`. A mean over the whole slice would be dominated by
easy background and rank every slice near 1. A slice with no such pixel scores 1. Ranked by it
alone, the list favours the small end slices, whose correction moves the Dice little
(docs/BENCHMARKS.md, section 2b).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.slices import take_slices

__all__ = ["review_slices", "expected_gain", "ROI_CONFIDENCE", "REVIEW_STATISTIC", "COMMITTEE_NETWORK"]

COMMITTEE_NETWORK = 0.1
"""The network's weight in the committee of a completed volume, the fused result's being the rest (chosen on the
development studies, ACDC's and LA's, by simulation: docs/BENCHMARKS.md section 2b)."""

ROI_CONFIDENCE = 0.9
REVIEW_STATISTIC = (
    "slices by expected gain: the mean foreground-class Dice a correction of the slice is expected to add; "
    f"confidence: mean confidence over the slice's pixels predicted foreground or with confidence < {ROI_CONFIDENCE}"
)


def expected_gain(labels: np.ndarray, truth: np.ndarray, axis: int) -> np.ndarray:
    """(slices,) along IJK ``axis``: the Dice a correction of each slice is expected to add to the volume's mean
    foreground-class Dice, for labels (K, J, I) and the probabilities (C, K, J, I) taken for the truth's (see the
    module docstring)."""
    stack, probs = take_slices(labels, axis), take_slices(truth, axis)  # (N, rows, cols), (N, C, rows, cols)
    n, classes = probs.shape[:2]
    gain = np.zeros(n)
    for c in range(1, classes):
        t, y = probs[:, c].reshape(n, -1), (stack == c).reshape(n, -1)
        t_sum, y_sum = t.sum(1, dtype=np.float64), y.sum(1)
        wrong = t_sum + y_sum - 2 * np.where(y, t, 0).sum(1, dtype=np.float64)  # sum |t - y|, y being 0 or 1
        gain += wrong / max(float(t_sum.sum() + y_sum.sum()), 1.0)
    return gain / max(classes - 1, 1)


def review_slices(
    labels: np.ndarray,
    confidence: np.ndarray,
    axis: int,
    labeled: set[int] | None = None,
    gain: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Per-slice review entries, by expected ``gain`` (:func:`expected_gain`) from the highest, or without gains
    from the least confident (see the module docstring); ties by slice index."""
    lab, conf = take_slices(labels, axis), take_slices(confidence, axis)
    entries = []
    for i in range(lab.shape[0]):
        roi = (lab[i] > 0) | (conf[i] < ROI_CONFIDENCE)
        score = float(conf[i][roi].mean()) if roi.any() else 1.0
        entry = {
            "index": i,
            "confidence": round(score, 6),
            "foreground_fraction": round(float((lab[i] > 0).mean()), 6),
            "labeled": bool(labeled and i in labeled),
        }
        if gain is not None:
            entry["gain"] = round(float(gain[i]), 6)
        entries.append(entry)
    if gain is not None:
        return sorted(entries, key=lambda e: (-e["gain"], e["index"]))
    return sorted(entries, key=lambda e: (e["confidence"], e["index"]))
