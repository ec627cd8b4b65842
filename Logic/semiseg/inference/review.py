"""The review list: a volume's slices from least to most confident, where a correction pays most.

The statistic (our choice) is the mean confidence over the slice's *region of interest*: the
pixels predicted as foreground or whose confidence is below :data:`ROI_CONFIDENCE`. A mean over
the whole slice would be dominated by easy background and rank every slice near 1. A slice with
no such pixel scores 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.slices import take_slices

__all__ = ["review_slices", "ROI_CONFIDENCE", "REVIEW_STATISTIC"]

ROI_CONFIDENCE = 0.9
REVIEW_STATISTIC = f"mean confidence over the slice's pixels predicted foreground or with confidence < {ROI_CONFIDENCE}"


def review_slices(
    labels: np.ndarray, confidence: np.ndarray, axis: int, labeled: set[int] | None = None
) -> list[dict[str, Any]]:
    """Per-slice review entries sorted from least to most confident (see module docstring)."""
    lab, conf = take_slices(labels, axis), take_slices(confidence, axis)
    entries = []
    for i in range(lab.shape[0]):
        roi = (lab[i] > 0) | (conf[i] < ROI_CONFIDENCE)
        score = float(conf[i][roi].mean()) if roi.any() else 1.0
        entries.append(
            {
                "index": i,
                "confidence": round(score, 6),
                "foreground_fraction": round(float((lab[i] > 0).mean()), 6),
                "labeled": bool(labeled and i in labeled),
            }
        )
    return sorted(entries, key=lambda e: (e["confidence"], e["index"]))
