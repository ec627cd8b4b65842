"""Fusion of the network's probabilities with the interpolation, by distance to the labelled slices.

The interpolation (:mod:`semiseg.completion.interpolation`) is sure of itself deep inside or far
outside its contour and near a labelled slice; it is unsure along its contour and far from the
labelled slices, where the network (which sees the image) should decide. We write this as a
product of experts (Hinton, "Training products of experts by minimizing contrastive divergence",
Neural Computation 2002): for each class ``c`` the interpolation gives a factor

    q_c = sigmoid(-sdf_c / (scale * d)),

with ``sdf_c`` the signed distance (pixels) to the interpolated contour of class ``c`` and ``d``
the slice's distance to the nearest labelled slice, and the fused probability of class ``c`` is
proportional to ``p_net(c) ** T * q_c * prod_{c' != c} (1 - q_c')``. The volume's own parameter,
``scale`` (pixels of contour uncertainty per slice of distance), is fitted on the labelled slices
only: each interior labelled slice is left out, interpolated from its labelled neighbours, and
scored by the likelihood of its true labels (:func:`fit_scale`); the fusion uses it times
:data:`SHARPEN`. ``T`` (:data:`TEMPERATURE`), :data:`SHARPEN` and the shrink rates below are the
same for every volume, chosen on the development volumes (LA) and kept in one place here.
Choices left open, ours:

- Beyond the first and the last labelled slice that hold a class, the interpolation has nothing;
  there the prior is the outermost labelled shape (carried along the image by the registration back
  end, :attr:`~semiseg.completion.interpolation.Interpolation.carried`), shrinking by ``g`` pixels per slice (its
  signed distance grows by ``g`` per slice), with ``g`` the mean rate at which the class's
  equivalent radius changes between its labelled slices (at least :data:`MIN_SHRINK`; with one
  labelled slice, :data:`DEFAULT_SHRINK`). A structure ends, and the prior says roughly where;
  the network, which sees the image, places the end. Without it, a network trained on k slices
  that all show the structure paints it on every slice beyond.
- Between a labelled slice that holds a class and one that does not (the user checked it), the
  interpolation has no opinion on that class (factor 1/2 for both answers): the network decides.
- Beyond an outermost labelled slice checked and found empty (no class at all), every class is absent, as
  between two empty labelled slices: the user bounded the structures there. Without it, accepting such a
  slice would take the shrinking shape's "absent" away from the slices beyond it and hand them to the
  network alone. The same holds class by class (:data:`CLASS_ENDS`): an outermost labelled slice that
  lacks a class which another labelled slice holds ends that class, beyond it too (the right ventricle
  ends before the myocardium towards the apex). A class that no labelled slice holds is left to the
  network beyond the labelled range: the user may not have drawn it at all.
- The network's probabilities enter tempered, ``p_net ** TEMPERATURE`` (renormalised): a network
  trained on a handful of slices is over-confident, and untempered it overrules the interpolation
  where the interpolation is right.
- The network's probabilities are posteriors: they hold the class frequencies of the slices it was
  trained on, which the interpolation's factors (likelihood-like, 1/2 on the contour) do not. Where
  the interpolation speaks for class ``c`` they are divided by its frequency, ``pi_c``, measured on the
  labelled slices (the "scaled likelihoods" of hybrid networks: Bourlard and Morgan, "Connectionist
  Speech Recognition: A Hybrid Approach", 1994). Without it the product holds the background's prior
  and the result lies inside both experts' contours, most where they are least sure (far from the
  labelled slices and for small structures). Where the interpolation has no opinion on ``c``, the
  network decides alone and keeps its prior: divided there, its faint guesses would become islands of
  a small class. This adds no setting.
- Factors are clipped to [``EPS``, 1 - ``EPS``] so that a confident network can still overrule
  an interpolation that, say, missed a structure that moved.
- On a labelled slice the output is the user's labels with probability 1: pseudo-labels never
  overwrite them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .interpolation import Interpolation, interpolate_labels, outer_range
from .registration import SliceMotion

__all__ = ["class_frequencies", "fuse", "fit_scale", "extrapolate", "SCALES", "DEFAULT_SCALE", "EPS", "TEMPERATURE",
           "SHARPEN", "CLASS_ENDS", "MIN_SHRINK", "DEFAULT_SHRINK"]

SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""The grid :func:`fit_scale` searches (pixels of contour uncertainty per slice of distance)."""

DEFAULT_SCALE = 1.0
"""The scale used when no labelled slice can be left out (fewer than three labelled slices)."""

EPS = 1e-3

TEMPERATURE = 0.25
"""Exponent of the network's probabilities in the product (chosen on development volumes, docs/BENCHMARKS.md
section 2)."""

SHARPEN = 0.5
"""The fusion uses the fitted scale times this: the interpolation trusted twice as far as its leave-one-out
likelihood alone says (chosen on development volumes with :data:`TEMPERATURE`, docs/BENCHMARKS.md section 2)."""

CLASS_ENDS = True
"""Whether an outermost labelled slice that lacks a class (and holds another) ends that class beyond it too (see
the module docstring; chosen on development volumes, docs/BENCHMARKS.md section 2, ``fusion_settings.py --ends``)."""

MIN_SHRINK = 1.0
DEFAULT_SHRINK = 1.0
"""Pixels per slice by which the outermost labelled shape shrinks beyond it (see module docstring)."""


def _factors(sdf: np.ndarray, distance: np.ndarray, scale: float, opinion: np.ndarray) -> np.ndarray:
    """q (C, N, rows, cols) from signed distances (C, N, rows, cols); 1/2 where ``opinion`` (C, N) is False."""
    sigma = np.maximum(scale * np.maximum(distance, 1.0), 1e-3)[None, :, None, None]
    with np.errstate(over="ignore"):
        q = 1.0 / (1.0 + np.exp(np.clip(sdf / sigma, -50, 50)))
    q = np.clip(q, EPS, 1 - EPS).astype(np.float32)
    q[~opinion] = 0.5
    q[0] = 0.5  # background carries no factor of its own
    return q


def extrapolate(interp: Interpolation, class_ends: bool = CLASS_ENDS) -> tuple[np.ndarray, np.ndarray]:
    """(signed distances, opinion) of ``interp`` extended beyond the outermost labelled slices of each class.

    Returns copies of ``interp.sdf`` (C, N, rows, cols) and of the opinion mask (C, N) in which the
    slices beyond the first and last labelled slice holding class ``c`` (up to the next labelled
    slice, which bounds the structure) hold that slice's shape shrunk by ``g`` pixels per slice.
    """
    sdf, opinion = interp.sdf.copy(), _opinion(interp, class_ends)
    lab = interp.labeled
    for c in range(1, sdf.shape[0]):
        holding = [i for i in lab if (interp.sdf[c, i] < 0).any()]
        radius = [float(np.sqrt((interp.sdf[c, i] < 0).sum() / np.pi)) for i in holding]
        rates = [abs(r1 - r0) / (b - a) for r0, r1, a, b in zip(radius, radius[1:], holding, holding[1:])]
        g = max(MIN_SHRINK, float(np.mean(rates))) if rates else DEFAULT_SHRINK
        for edge, slices in outer_range(interp.labels, lab, c):
            for s in slices:
                shape = interp.sdf[c, s if interp.carried[c, s] else edge]  # carried along the image, or as drawn
                sdf[c, s] = shape + g * abs(s - edge)
                opinion[c, s] = True
    return sdf, opinion


def _opinion(interp: Interpolation, class_ends: bool = CLASS_ENDS) -> np.ndarray:
    """(C, N) whether the interpolation speaks for class c on slice n (see module docstring)."""
    num_classes, n = interp.sdf.shape[:2]
    opinion = np.zeros((num_classes, n), bool)
    lab = interp.labeled
    present = interp.sdf[:, lab].reshape(num_classes, len(lab), -1).min(-1) < 0  # (C, L): class c on labelled slice
    for j, (a, b) in enumerate(zip(lab[:-1], lab[1:])):
        both = present[:, j] == present[:, j + 1]  # both hold it (interpolated) or neither does (absent)
        opinion[:, a + 1 : b] = both[:, None]
    if present[1:].any():  # the structures end at an outermost labelled slice checked and found empty
        for j, beyond in ((0, slice(0, lab[0])), (-1, slice(lab[-1] + 1, n))):
            if not present[1:, j].any():
                opinion[1:, beyond] = True  # sdf is FAR there: absent
            elif class_ends:  # or each class that the slice lacks and another labelled slice holds
                opinion[1:, beyond] |= (present[1:].any(1) & ~present[1:, j])[:, None]
    return opinion


def class_frequencies(interp: Interpolation) -> np.ndarray:
    """(C,) the frequency of each class on the labelled slices (at least one pixel's worth), uniform without any."""
    num_classes = interp.sdf.shape[0]
    labels = interp.labels[interp.labeled]
    if not labels.size:
        return np.full(num_classes, 1.0 / num_classes)
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=num_classes)[:num_classes]
    return np.maximum(counts, 1) / float(labels.size)


def fuse(
    net_probs: np.ndarray,
    interp: Interpolation,
    scale: float,
    temperature: float = TEMPERATURE,
    beyond: bool = True,
    sharpen: float = SHARPEN,
    scaled: bool = True,
    class_ends: bool = CLASS_ENDS,
) -> np.ndarray:
    """Fused class probabilities (C, N, rows, cols) of network probabilities (C, N, rows, cols) in slice-stack order.

    ``scaled`` divides the network's probabilities by the labelled slices' class frequencies first, where the
    prior speaks for the class (see the module docstring); an uninformed network (uniform probabilities,
    ``scaled=False``) gives the prior alone. ``sharpen``, ``temperature`` and ``class_ends`` are the module's
    constants unless a benchmark varies them.
    """
    sdf, opinion = extrapolate(interp, class_ends) if beyond else (interp.sdf, _opinion(interp, class_ends))
    q = _factors(sdf, interp.distance, scale * sharpen, opinion)
    num_classes = q.shape[0]
    log_not = np.log1p(-q[1:]).sum(0)  # sum over foreground classes of log(1 - q)
    log_p = np.log(np.clip(net_probs, 1e-8, 1.0))
    if scaled:  # divided by the class frequencies where the prior speaks for the class (module docstring)
        log_pi = np.log(class_frequencies(interp)).astype(np.float32)
        divisor = np.where(opinion, log_pi[:, None], np.float32(0.0))  # (C, N)
        divisor[0] = np.where(opinion[1:].any(0), log_pi[0], np.float32(0.0))  # the background: where any class is
        log_p -= divisor[:, :, None, None]
    log_p *= temperature
    fused = np.empty_like(log_p)
    fused[0] = log_p[0] + log_not
    for c in range(1, num_classes):
        fused[c] = log_p[c] + np.log(q[c]) + log_not - np.log1p(-q[c])
    fused -= fused.max(0, keepdims=True)
    np.exp(fused, out=fused)
    fused /= fused.sum(0, keepdims=True)
    lab = interp.labeled
    if lab:
        onehot = np.eye(num_classes, dtype=np.float32)[interp.labels[lab]]  # (L, rows, cols, C)
        fused[:, lab] = np.moveaxis(onehot, -1, 0)
    return fused


def fit_scale(
    stack: np.ndarray, labeled: Sequence[int], num_classes: int, backend: str = "auto",
    scales: Sequence[float] = SCALES, motion: SliceMotion | None = None,
) -> tuple[float, dict[str, float]]:
    """The scale whose leave-one-out interpolations best explain the labelled slices.

    Each labelled slice with a labelled slice on both sides is removed, re-interpolated from the
    others, and its true labels scored by the interpolation's factors alone (mean per-pixel log
    likelihood over the pixels where it has an opinion, foreground classes). Only labelled slices
    are read, so the result cannot depend on any hidden slice.

    Returns:
        (scale, {"scale": ..., "left_out": number of slices used, "log_likelihood": best score});
        :data:`DEFAULT_SCALE` when no slice can be left out.
    """
    lab = sorted(set(int(i) for i in labeled))
    left_out = lab[1:-1]
    masked = np.zeros_like(stack)
    masked[lab] = stack[lab]
    scores = {s: 0.0 for s in scales}
    counted = 0
    for i in left_out:
        others = [j for j in lab if j != i]
        interp = interpolate_labels(masked, others, num_classes, backend, motion, beyond=False)
        opinion = _opinion(interp)
        if not opinion[1:, i].any():
            continue
        counted += 1
        truth = stack[i]
        for s in scales:
            q = _factors(interp.sdf[:, i : i + 1], interp.distance[i : i + 1], s, opinion[:, i : i + 1])[:, 0]
            ll = 0.0
            for c in range(1, num_classes):
                if opinion[c, i]:
                    ll += float(np.where(truth == c, np.log(q[c]), np.log1p(-q[c])).mean())
            scores[s] += ll
    if not counted:
        return DEFAULT_SCALE, {"scale": DEFAULT_SCALE, "left_out": 0, "log_likelihood": float("nan")}
    best = max(scales, key=lambda s: scores[s])
    return best, {"scale": best, "left_out": counted, "log_likelihood": scores[best] / counted}
