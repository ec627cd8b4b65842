"""The page's logic on a real trame-slicer application, without a browser: opening volumes, slices,
labelled slices, saving labels, training settings; the curves; the methods offered."""

from __future__ import annotations

import json

import pytest

from semiseg_web.plot import HEIGHT, WIDTH, Curves
from semiseg_web.state import METHODS

from webtesting import synthetic_volume


@pytest.fixture
def web(tmp_path):
    from trame.app import get_server

    from semiseg_web.app import SemiSegWebApp

    server = get_server(f"semiseg-test-{tmp_path.name}", client_type="vue3")
    app = SemiSegWebApp(server, cacheDir=str(tmp_path / "cache"), outDir=str(tmp_path / "out"),
                        segmentNames=("disc", "ring"))
    app.tmp = tmp_path
    yield app
    app.shutdown()


def test_building_the_views_prints_no_vtk_warning(capfd, web):
    for layoutId in ("three", "threed", "axial"):
        web.logic._onLayout(layoutId)
    shown = capfd.readouterr().err
    assert "WindowResizeEvent" not in shown and "Warning: In" not in shown, shown[-2000:]
    assert web.slicerApp.view_manager.get_view("Yellow") is not None  # the views were built


def test_open_step_check_and_save(web):
    logic, data = web.logic, web.logic.data
    logic.openPaths([synthetic_volume(web.tmp / "disc.nrrd")])
    assert data.volume_loaded and data.volume_name == "disc"
    assert [s.name for s in data.segments] == ["disc", "ring"] and data.active_segment_id == data.segments[0].segment_id
    assert data.slice_count == 8 and 0 <= data.current_slice < 8
    assert "No labelled slice" in data.labeled_text
    start = data.current_slice
    logic.stepSlice(1)
    assert data.current_slice == min(start + 1, 7)
    logic.stepSlice(-100)
    assert data.current_slice == 0
    logic.markChecked()
    assert data.labeled_slices == [0] and data.labeled_text == "Labelled slices along K: 0"
    path = logic.saveLabels()
    assert path.endswith("disc_labels.nii.gz")
    info = json.loads((web.tmp / "out" / "disc_labels.json").read_text())
    assert info["checked_slices"] == [0] and [s["name"] for s in info["segments"]] == ["disc", "ring"]

    data.new_segment_name = "bright rim"
    logic.addSegment()
    assert [s.name for s in data.segments][-1] == "bright rim" and data.new_segment_name == ""

    data.train.iterations = 0
    with pytest.raises(ValueError, match="iterations"):
        logic.train()
    with pytest.raises(ValueError, match="no review list"):
        logic.selectReviewRow(0)


def test_an_unreadable_upload_is_refused_and_the_scene_kept(web):
    logic = web.logic
    logic.openPaths([synthetic_volume(web.tmp / "disc.nrrd")])
    with pytest.raises(ValueError, match="no volume file"):
        logic.openPaths([])
    assert logic.data.volume_name == "disc"


def test_uploaded_file_names_cannot_leave_the_upload_folder():
    from semiseg_web.logic import _safeFileName, _stem

    assert _safeFileName("../../etc/passwd") == "passwd"
    assert _safeFileName("..") == "volume" and _safeFileName("") == "volume"
    assert _safeFileName("my scan (1).nii.gz") == "my_scan_1_.nii.gz"
    assert _stem("case.nii.gz") == "case" and _stem("case.nrrd") == "case" and _stem("case") == "case"


def test_curves_scale_loss_and_dice_into_the_plot():
    curves = Curves()
    assert curves.state().loss_points == "" and "not yet" in curves.state().dice_label
    events = [{"event": "start", "iterations": 100}]
    events += [{"event": "iteration", "iteration": i, "iterations": 100, "loss": 1.0 / i} for i in (10, 20, 50, 100)]
    events += [
        {"event": "validation", "iteration": 50, "dice": 0.5},
        {"event": "validation", "iteration": 100, "dice": 0.8},
        {"event": "iteration", "iteration": 101, "loss": float("nan")},
        {"event": "checkpoint"},
    ]
    assert curves.add(events)
    state = curves.state()
    points = [tuple(map(float, p.split(","))) for p in state.loss_points.split()]
    assert [x for x, _ in points] == [WIDTH * f for f in (0.1, 0.2, 0.5, 1.0)]
    assert points[0][1] == pytest.approx(5.0) and points[-1][1] == pytest.approx(HEIGHT - 5.0)  # high loss on top
    assert state.dice_points == "150.0,50.0 300.0,20.0"
    assert state.dice_dots == [[WIDTH / 2, HEIGHT / 2], [WIDTH, HEIGHT * 0.2]]
    assert state.loss_label.startswith("loss 0.010") and state.dice_label == "validation Dice 0.80"
    many = Curves()
    many.add([{"event": "iteration", "iteration": i, "iterations": 5000, "loss": 1.0} for i in range(1, 5001)])
    assert len(many.state().loss_points.split()) == 300


def test_the_page_offers_exactly_the_engine_methods():
    from semiseg.methods import METHODS as ENGINE_METHODS

    assert set(METHODS) == set(ENGINE_METHODS)


def test_volume_rendering_is_off_until_asked_for(web):
    logic, rendering = web.logic, web.slicerApp.volume_rendering
    logic.openPaths([synthetic_volume(web.tmp / "disc.nrrd")])
    assert logic.data.layout == "axial" and not logic.data.volume_rendering
    assert [v.get_singleton_tag() for v in web.slicerApp.view_manager.get_views()] == ["Red"]
    assert not rendering.has_vr_display_node(logic.volume)
    logic._onLayout("threed")  # what choosing the layout in the page does
    assert {"Red", "Green", "Yellow", "ThreeD"} <= {
        v.get_singleton_tag() for v in web.slicerApp.view_manager.get_views()
    }
    assert not rendering.has_vr_display_node(logic.volume)
    logic._onVolumeRendering(True)
    assert rendering.get_vr_display_node(logic.volume).GetVisibility()
    logic._onVolumeRendering(False)
    assert not rendering.get_vr_display_node(logic.volume).GetVisibility()


def test_a_second_volume_replaces_the_first_and_the_brush_still_paints(web):
    from test_paint_pipelines import _stroke

    logic = web.logic
    logic.openPaths([synthetic_volume(web.tmp / "first.nrrd")])
    logic.openPaths([synthetic_volume(web.tmp / "second.nrrd", shape=(6, 40, 40))])
    assert logic.data.volume_name == "second" and logic.data.slice_count == 6
    assert web.slicerApp.scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1
    view = web.slicerApp.view_manager.get_view("Red")
    view.render_window().SetSize(200, 200)
    view.fit_view_to_content()
    view.render()
    logic.data.brush_size = 20
    logic.brush.setSize(20)
    logic._onTool("paint")
    _stroke(view)
    logic._refreshLabeled()
    assert logic.data.labeled_slices == [logic.data.current_slice]
    assert logic.data.can_undo_stroke
