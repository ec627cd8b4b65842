"""Results while a run trains: the labelled volume's pseudo-labels, refreshed every few seconds.

The first preview is the shape prior alone (the interpolation of the user's slices), written before
the first training step; then, every ``every`` seconds of training, the network as it is, fused
with the prior. Each preview overwrites ``RUN_DIR/preview/<name>/`` with the same files as a final
prediction (written atomically, ``review.json`` last) and emits a ``preview`` progress event that
says it is preliminary. The final result goes to ``RUN_DIR/predictions/<name>/`` as before.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import torch

from ..inference import Predictor, outputs, write_result
from ..io.slices import Volume
from .prior import ShapePrior

__all__ = ["Previews", "PREVIEW_DIR"]

PREVIEW_DIR = "preview"


class Previews:
    """Writes the previews of one labelled volume during a run.

    Args:
        run_dir: the run folder.
        name: the volume's output name (``<name>`` above).
        volume: the labelled volume (normalised image and geometry).
        prior: its :class:`ShapePrior`.
        every: seconds between previews during training (0: only the first).
        log: the run's progress log (``emit``).
        output_format: file format of the written volumes.
        labeled: the labelled slice indices (marked in ``review.json``).
    """

    def __init__(self, run_dir: str | Path, name: str, volume: Volume, prior: ShapePrior, every: float, log: Any,
                 output_format: str = "nii.gz", labeled: set[int] | None = None) -> None:
        self.dir = Path(run_dir) / PREVIEW_DIR / name
        self.name, self.volume, self.prior, self.every, self.log = name, volume, prior, float(every), log
        self.output_format, self.labeled = output_format, set(labeled or ())
        self.last = time.monotonic()
        self.started = time.monotonic()

    def _write(self, result: dict[str, Any], iteration: int, iterations: int) -> None:
        try:
            write_result(
                result,
                self.volume.reference,
                self.dir,
                self.prior.axis,
                self.output_format,
                self.labeled,
                self.volume.path,
            )
        except OSError as err:  # e.g. a front end holds the file open on Windows: the next preview will do
            if err.errno == errno.ENOSPC:
                raise
            self.log.emit("preview_skipped", iteration=iteration, message=f"{type(err).__name__}: {err}")
            self.last = time.monotonic()
            return
        self.log.emit(
            "preview",
            iteration=iteration,
            iterations=iterations,
            name=self.name,
            dir=f"{PREVIEW_DIR}/{self.name}",
            preliminary=True,
            seconds=round(time.monotonic() - self.started, 3),
        )
        self.last = time.monotonic()

    def first(self, iterations: int) -> None:
        """The prior alone, before training."""
        self._write(outputs(self.prior.alone(), axis=self.prior.axis), 0, iterations)

    def due(self) -> bool:
        return self.every > 0 and time.monotonic() - self.last >= self.every

    def network(
        self, model: torch.nn.Module, size: int, num_classes: int, device: torch.device, iteration: int, iterations: int
    ) -> None:
        """The network as it is now, fused with the prior (the network is left in the mode it was in)."""
        was_training = model.training
        model.eval()
        try:
            predictor = Predictor.of_model(model, size, num_classes, self.prior.axis, device)
            probs = predictor.probabilities(self.volume.image, self.prior.axis)
        finally:
            model.train(was_training)
        self._write(self.prior.outputs(probs), iteration, iterations)
