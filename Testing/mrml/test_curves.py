"""Training curves from the engine's events, shown as Slicer plot nodes (table, series, chart, view)."""

from __future__ import annotations

import math

from SemiSegSlicerLib.curves import CurvePlot, TrainingCurves

EVENTS = [
    {"event": "setup", "device": "cpu"},
    {"event": "start", "iterations": 200},
    {"event": "iteration", "iteration": 10, "iterations": 200, "loss": 0.9},
    {"event": "iteration", "iteration": 20, "iterations": 200, "loss": float("nan")},  # left out
    {"event": "iteration", "iteration": 30, "iterations": 200, "loss": 0.5},
    {"event": "validation", "iteration": 30, "dice": 0.61},
    {"event": "validation", "iteration": 40, "dice": None},  # not measured: left out
]


def test_curves_take_finite_values_from_the_events():
    curves = TrainingCurves()
    assert not curves.add(EVENTS[:2]) and curves.iterations == 200
    assert curves.add(EVENTS[2:])
    assert curves.loss == [(10, 0.9), (30, 0.5)] and curves.dice == [(30, 0.61)]
    assert not curves.add([{"event": "checkpoint", "iteration": 30}])


def test_plot_nodes_follow_the_curves_and_leave_the_scene_clean(scene):
    before = scene.GetNumberOfNodes()
    plot = CurvePlot(scene)
    chart = plot.chartNode
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = [chart.GetNthPlotSeriesNode(n) for n in range(2)]
    assert [s.GetYColumnName() for s in series] == ["loss", "dice"]
    assert all(s.GetTableNode() is plot.tables[key] for s, key in zip(series, ("loss", "dice")))
    assert plot.viewNode.GetPlotChartNodeID() == chart.GetID()
    assert plot.points("loss") == [] and plot.points("dice") == []

    curves = TrainingCurves()
    curves.add(EVENTS)
    plot.update(curves)
    assert plot.points("loss") == [(10.0, 0.9), (30.0, 0.5)]
    assert [(i, round(v, 6)) for i, v in plot.points("dice")] == [(30.0, 0.61)]
    assert not chart.GetXAxisRangeAuto() and list(chart.GetXAxisRange()) == [0.0, 200.0]
    # a new run starts from empty curves: the old points go
    plot.update(TrainingCurves())
    assert plot.points("loss") == [] and all(math.isfinite(v) for _, v in plot.points("dice"))
    plot.remove()
    assert scene.GetNumberOfNodes() == before
