"""Training curves for the page: the loss and the validation Dice as SVG polyline points.

Drawn by the browser from two strings of the state (no plotting library, no image sent): the loss is
scaled to its own range, the Dice to [0, 1], both against the iteration on a shared x axis.
"""

from __future__ import annotations

from SemiSegSlicerLib.curves import TrainingCurves

from .state import PlotState

__all__ = ["WIDTH", "HEIGHT", "Curves"]

WIDTH, HEIGHT = 300.0, 100.0
_MAX_POINTS = 300


class Curves(TrainingCurves):
    """The run's curves (collected by :class:`SemiSegSlicerLib.curves.TrainingCurves`) drawn for the page."""

    def _x(self, iteration: int) -> float:
        return round(WIDTH * min(1.0, max(0.0, iteration / self.iterations)), 1)

    def state(self) -> PlotState:
        """The curves as polyline points (``"x,y x,y ..."``, y down) and their labels."""
        loss = _thin(self.loss)
        lossText, lossPoints = "", ""
        if loss:
            low, high = min(v for _, v in loss), max(v for _, v in loss)
            span = (high - low) or 1.0
            lossPoints = " ".join(
                f"{self._x(i)},{round(HEIGHT - 5 - (HEIGHT - 10) * (v - low) / span, 1)}" for i, v in loss
            )
            lossText = f"loss {loss[-1][1]:.3f} (range {low:.3f}-{high:.3f})"
        dice = _thin(self.dice)
        dicePoints = " ".join(f"{self._x(i)},{round(HEIGHT * (1.0 - v), 1)}" for i, v in dice)
        diceText = f"validation Dice {dice[-1][1]:.2f}" if dice else "validation Dice: not yet measured"
        return PlotState(
            loss_points=lossPoints,
            dice_points=dicePoints,
            dice_dots=[[self._x(i), round(HEIGHT * (1.0 - v), 1)] for i, v in dice[-50:]],
            loss_label=lossText,
            dice_label=diceText,
        )


def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """At most ``_MAX_POINTS`` points, evenly picked, always keeping the last."""
    if len(points) <= _MAX_POINTS:
        return list(points)
    step = len(points) / _MAX_POINTS
    picked = [points[int(k * step)] for k in range(_MAX_POINTS - 1)]
    return picked + [points[-1]]
