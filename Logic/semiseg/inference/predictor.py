"""Slice-wise prediction of whole volumes: pseudo-labels, confidence, entropy and the review list.

Each slice along the run's axis is resized to the training size, predicted in batches, and its
class probabilities are resized back (bilinear) to the slice's own size before the argmax, so
every output lies on the input's grid. Confidence is the max softmax probability, entropy is
``-sum p log p`` in nats. The review list is :func:`~semiseg.inference.review.review_slices`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InputError
from ..io.images import OUTPUT_FORMATS, read_image, volume_name, write_like
from ..io.slices import Volume, normalize_intensity, put_slices, resize_images, take_slices
from ..models import UNet2D, resolve_precision, set_precision
from ..models.device import resolve_device
from ..training.checkpoint import load_checkpoint
from .islands import keep_largest_island
from .review import REVIEW_STATISTIC, expected_gain, review_slices

if TYPE_CHECKING:
    from ..completion import ShapePrior

__all__ = [
    "Predictor",
    "predict_volume",
    "outputs",
    "write_result",
    "write_prediction",
    "VOLUMES",
]

VOLUMES = ("labels", "confidence", "entropy")
"""The volumes of a result, written by :func:`write_result` (``labels.<ext>`` and so on)."""


class Predictor:
    """A trained model ready for inference.

    Args:
        checkpoint: a run's ``checkpoint.pt``.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: slices per forward pass.
        precision: ``"auto"`` (bfloat16 forward passes on a CPU with native bf16 kernels), ``"bf16"`` or
            ``"fp32"`` (:mod:`semiseg.models.precision`); the weights stay float32 and the probabilities
            are float32 in every case.

    Attributes:
        islands: the classes kept to their largest island (:mod:`.islands`), as the run decided (its
            checkpoint's ``meta["keep_largest_island"]``; none for a run that predates it); settable.
    """

    def __init__(
        self, checkpoint: str | os.PathLike, device: str = "auto", batch_size: int = 16, precision: str = "auto"
    ) -> None:
        state = load_checkpoint(checkpoint)
        self.checkpoint: Path | None = Path(checkpoint)
        self.device = resolve_device(device)
        mc = state["model_config"]
        self.num_classes = int(state["num_classes"])
        self.model = UNet2D(int(mc.get("in_channels", 1)), self.num_classes, mc["features"], mc["dropout"])
        self.model.load_state_dict(state["model"])
        self.model.to(self.device).eval()
        self.precision = resolve_precision(precision, self.device)
        set_precision([self.model], self.precision, self.device)
        self.size = int(state["train_config"]["size"])
        self.meta = dict(state.get("meta", {}))
        self.axis = int(self.meta.get("axis", 2))
        self.islands: list[int] = [int(c) for c in self.meta.get("keep_largest_island", [])]
        self.batch_size = batch_size

    @classmethod
    def of_model(
        cls, model: torch.nn.Module, size: int, num_classes: int, axis: int, device: torch.device, batch_size: int = 16
    ) -> "Predictor":
        """A predictor over a network in memory (a training's previews); the caller sets its eval/train mode."""
        self = cls.__new__(cls)
        self.model, self.size, self.num_classes, self.axis = model, int(size), int(num_classes), int(axis)
        self.device, self.batch_size, self.meta = device, batch_size, {"axis": axis}
        self.checkpoint, self.islands = None, []
        return self

    @torch.no_grad()
    def probabilities(self, image: np.ndarray, axis: int | None = None) -> np.ndarray:
        """Class probabilities (C, K, J, I) of a normalised volume (K, J, I), or of one with the network's input
        channels first (in_channels, K, J, I)."""
        axis = self.axis if axis is None else axis
        stack = take_slices(image, axis)
        rows, cols = stack.shape[-2:]
        out = np.empty((self.num_classes, stack.shape[0], rows, cols), dtype=np.float32)
        for start in range(0, stack.shape[0], self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(stack[start : start + self.batch_size])).to(self.device)
            logits = self.model(resize_images(chunk, self.size))
            probs = torch.softmax(logits.float(), 1)
            probs = torch.nn.functional.interpolate(probs, size=(rows, cols), mode="bilinear", align_corners=False)
            out[:, start : start + chunk.shape[0]] = probs.permute(1, 0, 2, 3).cpu().numpy()
        return np.stack([put_slices(p, axis) for p in out])


def outputs(
    probs: np.ndarray,
    islands: Collection[int] = (),
    axis: int = 2,
    labeled: Collection[int] = (),
    truth: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Labels (uint8), confidence (max probability) and entropy (nats) of class probabilities (C, K, J, I), and
    ``gain``, each slice's expected gain along ``axis`` (:func:`~.review.expected_gain`, with ``truth``'s
    probabilities, by default ``probs``); the classes ``islands`` kept to their largest island, except on the
    ``labeled`` slices (:func:`~semiseg.inference.islands.keep_largest_island`), and recorded as ``islands``."""
    labels = keep_largest_island(probs.argmax(0).astype(np.uint8), islands, axis, labeled)
    return {
        "labels": labels,
        "confidence": probs.max(0).astype(np.float32),
        "entropy": (-(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(0)).astype(np.float32),
        "gain": expected_gain(labels, probs if truth is None else truth, axis),
        "islands": np.array(sorted(int(c) for c in islands), dtype=np.int64),
    }


def predict_volume(
    predictor: Predictor,
    volume: Volume,
    axis: int | None = None,
    prior: "ShapePrior | None" = None,
    labeled: Collection[int] = (),
) -> dict[str, np.ndarray]:
    """Labels (uint8), confidence and entropy (float32), all (K, J, I) on the volume's grid, and the review's
    per-slice ``gain`` (:func:`outputs`).

    With the ``prior`` of this volume's labelled slices (:class:`~semiseg.completion.ShapePrior`), the
    network's probabilities are fused with it first, so confidence and entropy are those of what the
    user sees (:meth:`~semiseg.completion.ShapePrior.outputs`). Without a prior, the predictor's
    :attr:`~Predictor.islands` are kept to their largest island, on every slice but the ``labeled`` ones
    (:mod:`.islands`: a fused result is left as fused).
    """
    axis = predictor.axis if axis is None else axis
    probs = predictor.probabilities(volume.image, axis)
    if prior is not None:
        return prior.outputs(probs)
    return outputs(probs, predictor.islands, axis, labeled)


def write_result(
    result: dict[str, np.ndarray],
    reference: Any,
    out_dir: str | os.PathLike,
    axis: int,
    output_format: str = "nii.gz",
    labeled: set[int] | None = None,
    image: str = "",
) -> Path:
    """Write ``labels``, ``confidence``, ``entropy`` and ``review.json`` (by the ``gain`` of the slices, when the
    result has it) of ``result`` to ``out_dir``; the classes the result kept to their largest island (its
    ``islands``, :func:`outputs`) are recorded in ``review.json`` (``keep_largest_island``) so that a resumed run
    can tell a result of another setting.

    Files are written under temporary names and renamed at the end (``review.json`` last), so a
    failure writes nothing partial and a reader that waits for ``review.json`` sees a whole result.
    """
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = []
    for key in VOLUMES:
        arr = result[key]
        tmp = out_dir / f".{key}.tmp.{output_format}"
        write_like(arr, reference, tmp)
        staged.append((tmp, out_dir / f"{key}.{output_format}"))
    review = {
        "axis": axis,
        "statistic": REVIEW_STATISTIC,
        "image": image,
        "keep_largest_island": [int(c) for c in result.get("islands", ())],
        "slices": review_slices(result["labels"], result["confidence"], axis, labeled, result.get("gain")),
    }
    tmp_review = out_dir / ".review.tmp.json"
    tmp_review.write_text(json.dumps(review, indent=1))
    staged.append((tmp_review, out_dir / "review.json"))
    for tmp, final in staged:
        os.replace(tmp, final)
    return out_dir


def write_prediction(
    predictor: Predictor,
    image_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    axis: int | None = None,
    output_format: str = "nii.gz",
    labeled: set[int] | None = None,
    prior: "ShapePrior | None" = None,
) -> Path:
    """Predict ``image_path`` (fused with its ``prior``, if given) and write the result to ``out_dir``
    (:func:`write_result`)."""
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    array, reference = read_image(image_path)
    volume = Volume(volume_name(image_path), normalize_intensity(array), reference, path=str(image_path))
    axis = predictor.axis if axis is None else axis
    result = predict_volume(predictor, volume, axis, prior, labeled or ())
    return write_result(result, reference, out_dir, axis, output_format, labeled, str(image_path))
