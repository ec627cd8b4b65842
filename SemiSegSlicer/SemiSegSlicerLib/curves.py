"""Training curves: the loss and the validation Dice from the engine's progress events.

:class:`TrainingCurves` collects them from the events (docs/JOB_FORMAT.md) and is shared by the
Slicer module and the web page. :class:`CurvePlot` shows them the Slicer way: two table nodes
(iteration and loss; iteration and Dice), one plot series each, in one plot chart node shown by a
plot view node, which the module's ``qMRMLPlotWidget`` displays.
"""

from __future__ import annotations

import math

import vtk

__all__ = ["TrainingCurves", "CurvePlot"]


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TrainingCurves:
    """The loss and validation Dice of one run, as ``(iteration, value)`` pairs."""

    def __init__(self):
        self.iterations = 1
        self.loss: list[tuple[int, float]] = []
        self.dice: list[tuple[int, float]] = []

    def add(self, events) -> bool:
        """Take progress events; True when a curve changed. Non-finite values are left out."""
        changed = False
        for event in events:
            kind = event.get("event")
            if kind == "start":
                self.iterations = max(1, int(event.get("iterations") or 1))
            elif kind == "iteration" and _finite(event.get("loss")):
                self.iterations = max(1, int(event.get("iterations") or self.iterations))
                self.loss.append((int(event.get("iteration", 0)), float(event["loss"])))
                changed = True
            elif kind == "validation" and _finite(event.get("dice")):
                self.dice.append((int(event.get("iteration", 0)), float(event["dice"])))
                changed = True
        return changed


class CurvePlot:
    """Plot nodes of the training curves in ``scene``; :meth:`update` redraws them from a
    :class:`TrainingCurves`, :meth:`remove` takes every node out of the scene again.

    Attributes:
        chartNode: the ``vtkMRMLPlotChartNode`` (loss and validation Dice against the iteration).
        viewNode: a ``vtkMRMLPlotViewNode`` showing the chart (give it to a ``qMRMLPlotWidget``).
    """

    COLORS = {"loss": (0.93, 0.55, 0.13), "dice": (0.30, 0.69, 0.31)}

    def __init__(self, scene, name: str = "SemiSegSlicer training"):
        self.scene = scene
        self.tables, self.series = {}, {}
        self.chartNode = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} curves")
        self.chartNode.SetTitle("Training")
        self.chartNode.SetXAxisTitle("iteration")
        self.chartNode.SetYAxisTitle("loss / Dice")
        self.chartNode.SetLegendVisibility(True)
        for key, label in (("loss", "loss"), ("dice", "validation Dice")):
            table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} {label}")
            for column in ("iteration", key):
                array = vtk.vtkDoubleArray()
                array.SetName(column)
                table.AddColumn(array)
            series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", label)
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName("iteration")
            series.SetYColumnName(key)
            series.SetPlotType(series.PlotTypeScatter)
            series.SetMarkerStyle(series.MarkerStyleCircle if key == "dice" else series.MarkerStyleNone)
            series.SetColor(*self.COLORS[key])
            self.chartNode.AddAndObservePlotSeriesNodeID(series.GetID())
            self.tables[key], self.series[key] = table, series
        self.viewNode = scene.AddNewNodeByClass("vtkMRMLPlotViewNode", f"{name} plot view")
        self.viewNode.SetPlotChartNodeID(self.chartNode.GetID())

    def update(self, curves: TrainingCurves) -> None:
        """Replace the plotted points by those of ``curves``."""
        for key, points in (("loss", curves.loss), ("dice", curves.dice)):
            table = self.tables[key].GetTable()
            table.SetNumberOfRows(len(points))
            for row, (iteration, value) in enumerate(points):
                table.SetValue(row, 0, vtk.vtkVariant(float(iteration)))
                table.SetValue(row, 1, vtk.vtkVariant(float(value)))
            table.Modified()
            self.tables[key].Modified()
        self.chartNode.SetXAxisRangeAuto(False)
        self.chartNode.SetXAxisRange(0.0, float(curves.iterations))

    def points(self, key: str) -> list[tuple[float, float]]:
        """What the ``"loss"`` or ``"dice"`` table node holds, as ``(iteration, value)`` pairs."""
        table = self.tables[key].GetTable()
        return [
            (table.GetValue(r, 0).ToDouble(), table.GetValue(r, 1).ToDouble()) for r in range(table.GetNumberOfRows())
        ]

    def remove(self) -> None:
        for node in [self.viewNode, self.chartNode, *self.series.values(), *self.tables.values()]:
            if node is not None and node.GetScene() is self.scene:
                self.scene.RemoveNode(node)
