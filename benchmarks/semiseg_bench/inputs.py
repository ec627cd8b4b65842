"""Two candidates of issue 11 that give the network more than the slice itself as input.

- ``completion_25d``: the slice and its two neighbours along the slicing axis as three input channels (2.5D),
  the edges repeating the first and the last slice. The labelled slices are the training slices, as in
  ``supervised``.
- ``completion_priorin``: the slice and the shape prior's class probabilities (background left out) as input
  channels, so that the network refines the shape drawn nearby instead of guessing it from the pixels. At a
  labelled slice the prior of all the labelled slices is the label itself, so each training slice gets the
  prior of the *other* labelled slices (leave one out), which looks like what a hidden slice gets at inference;
  with one labelled slice there is no other one, and its prior channels are uniform.

Both networks are fused with the prior afterwards, like ``completion``. Only the ``supervised`` training is
measured (the clinician's default); the strong views of the semi-supervised methods would also perturb the
extra channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from semiseg.completion import ShapePrior
from semiseg.io.slices import SliceSet, resize_images, resize_labels, take_slices

from .common import sparsify

__all__ = ["INPUT_ROWS", "neighbour_channels", "prior_channels", "leave_one_out_channels", "training_slices",
           "inference_input"]

INPUT_ROWS = ("completion_25d", "completion_priorin")


def neighbour_channels(image: np.ndarray, axis: int, reach: int = 1) -> np.ndarray:
    """(2 reach + 1, K, J, I): the volume shifted by -reach..reach slices along IJK ``axis`` (edges repeated)."""
    along = 2 - axis
    n = image.shape[along]
    return np.stack([np.take(image, np.clip(np.arange(n) + off, 0, n - 1), axis=along)
                     for off in range(-reach, reach + 1)])


def prior_channels(image: np.ndarray, prior: ShapePrior) -> np.ndarray:
    """(C, K, J, I): the volume, then the prior's probabilities of every class but the background."""
    return np.concatenate([image[None], prior.alone()[1:]]).astype(np.float32)


def leave_one_out_channels(image: np.ndarray, labels: np.ndarray, axis: int, kept: Sequence[int],
                           num_classes: int, prior: ShapePrior) -> np.ndarray:
    """(k, C, rows, cols): each kept slice with the prior of the other kept slices as its extra channels (built
    with the slice motion of ``prior``, the prior of all of them)."""
    out = []
    for i in kept:
        rest = [j for j in kept if j != i]
        if rest:
            others = sparsify(labels, axis, rest)
            loo = ShapePrior.build(others, axis, rest, num_classes, image=image, motion=prior.motion).alone()[1:]
        else:
            loo = np.full((num_classes - 1, *image.shape), 1.0 / num_classes, np.float32)
        out.append(take_slices(np.concatenate([image[None], loo]), axis, [i])[0])
    return np.stack(out).astype(np.float32)


def training_slices(row: str, image: np.ndarray, labels: np.ndarray, axis: int, kept: Sequence[int],
                    num_classes: int, size: int, name: str, prior: ShapePrior) -> SliceSet:
    """The kept slices of ``labels`` (only those are labelled) with the input channels of ``row``."""
    if row == "completion_25d":
        stacks = take_slices(neighbour_channels(image, axis), axis, kept)
    else:
        stacks = leave_one_out_channels(image, labels, axis, kept, num_classes, prior)
    images = resize_images(torch.from_numpy(np.ascontiguousarray(stacks)), size)
    target = resize_labels(torch.from_numpy(np.ascontiguousarray(take_slices(labels, axis, kept)).astype(np.int64)),
                           size)
    return SliceSet(images, target, [(name, int(i)) for i in kept])


def inference_input(row: str, image: np.ndarray, axis: int, prior: ShapePrior) -> np.ndarray:
    """What the network of ``row`` sees of the whole volume: (in_channels, K, J, I)."""
    return neighbour_channels(image, axis) if row == "completion_25d" else prior_channels(image, prior)
