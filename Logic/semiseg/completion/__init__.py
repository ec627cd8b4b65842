"""Completing a volume from a few labelled slices: interpolation between them, and its fusion with the network.

- :mod:`.interpolation`: what *Fill between slices* does, per class, with the signed distances the fusion needs;
- :mod:`.registration`: the image's motion from slice to slice, which carries the labelled shapes along it
  (the default interpolation when the image is at hand);
- :mod:`.fusion`: the product of the network's probabilities and the interpolation's, by distance to the
  labelled slices, its one parameter fitted on the labelled slices alone;
- :mod:`.prior`: both for one labelled volume, as a run uses them (previews and the final result).
"""

from .prior import CompletionConfig, ShapePrior

__all__ = ["CompletionConfig", "ShapePrior"]
