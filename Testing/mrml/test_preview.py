"""Live results: the engine's ``preview`` events (docs/JOB_FORMAT.md) update the pseudo-label layer and the
review list while training runs, marked preliminary; the final result replaces them. Against the fake
engine's preview mode (real files, written as the engine writes them), on a real MRML scene."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from SemiSegSlicerLib import resultimport
from SemiSegSlicerLib.mrmlio import arrayFromVolume, segmentsToArray
from SemiSegSlicerLib.session import Session

import fakeengine
from mrmltesting import (
    addSegmentation,
    addVolume,
    cancelShowsTheLastResultsAgain,
    composites,
    fakeEngineSession,
    fileLabels,
    openGate,
    pollUntil,
    rotation,
    sceneNodes,
    segmentationSnapshot,
)

SHAPE = (6, 20, 24)  # K, J, I


@pytest.fixture
def engine(tmp_path):
    return fakeengine.install(tmp_path / "fake")


@pytest.fixture
def inputs(scene):
    volume = addVolume(scene, np.random.default_rng(4).normal(size=SHAPE).astype(np.float32), (0.8, 0.9, 3.0),
                       (4.0, -3.0, 2.0), rotation(20, "z"), name="scan")
    heart = np.zeros(SHAPE, np.uint8)
    heart[2, 5:15, 6:18] = 1
    lung = np.zeros(SHAPE, np.uint8)
    lung[2, 1:4, 1:4] = 1
    user = addSegmentation(scene, volume, {"heart": ((1, 0.5, 0), heart), "lung": ((0, 0.5, 1), lung)})
    return volume, user


_session = functools.partial(fakeEngineSession, Session, mode="preview")
_pollUntil = functools.partial(pollUntil, seconds=60.0)


def _fileReview(folder) -> dict:
    return json.loads((Path(folder) / "review.json").read_text())


def test_previews_update_the_pseudo_labels_live_and_the_final_result_replaces_them(scene, inputs, engine, tmp_path,
                                                                                   capfd):
    volume, user = inputs
    userBefore = segmentationSnapshot(user)
    session = _session(scene, tmp_path, engine, previews=3, gate=True, broken=[1])
    exported = session.start(volume, user, train={"iterations": 30, "size": 32})
    previewDir = Path(exported.runDir, "preview", "image")
    nodesBefore = sceneNodes(scene)

    # Preview 0 (iteration 0): a new pseudo-label node and confidence overlay, marked preliminary, while it trains.
    progress, _ = _pollUntil(session, lambda p, e: p.previewed)
    assert progress.state == "running" and session.running
    result = session.result
    assert result.preliminary and result.iteration == 0 and session.preview is result
    pseudo, confidence = result.segmentationNode, result.confidenceNode
    assert pseudo.GetID() != user.GetID()
    assert pseudo.GetName() == "segmentation pseudo-labels (preview at iteration 0 — preliminary)"
    assert pseudo.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) == "0"
    assert "preview at iteration 0 — preliminary" in progress.text
    first = segmentsToArray(pseudo, exported.segmentIds, volume)
    np.testing.assert_array_equal(first, fileLabels(previewDir))
    assert first.max() == 2 and np.count_nonzero(first) > 0
    assert arrayFromVolume(confidence) == pytest.approx(np.full(SHAPE, 0.5))
    assert [s["index"] for s in session.review.slices][:2] == [0, 1]
    composite = scene.GetNodesByClass("vtkMRMLSliceCompositeNode").GetItemAsObject(0)
    assert composite.GetForegroundVolumeID() == confidence.GetID()
    assert segmentationSnapshot(user) == userBefore
    nodesWithPreview = sceneNodes(scene)
    assert len(nodesWithPreview) > len(nodesBefore)
    session.review.select(session.review.rowOfSlice(3))  # the user looks at slice 3 meanwhile

    # Preview 1 is announced over a half-written labels file: skipped quietly, preview 0 stays.
    capfd.readouterr()
    openGate(session)
    progress, _ = _pollUntil(session, lambda p, e: any(x["event"] == "preview" and x["iteration"] == 10 for x in e))
    assert not progress.previewed and progress.state == "running" and progress.message == ""
    assert "ERR|" not in capfd.readouterr().err, "the skipped preview printed the readers' errors"
    assert session.result is result and result.iteration == 0
    np.testing.assert_array_equal(segmentsToArray(pseudo, exported.segmentIds, volume), first)

    # Preview 2 (iteration 20): the same nodes, updated in place; voxels, confidence and review list change.
    openGate(session)
    progress, _ = _pollUntil(session, lambda p, e: p.previewed)
    assert session.result.iteration == 20 and "preview at iteration 20 — preliminary" in progress.text
    assert session.result.segmentationNode is pseudo and session.result.confidenceNode is confidence
    assert sceneNodes(scene) == nodesWithPreview  # no node added or left behind
    assert pseudo.GetName().endswith("(preview at iteration 20 — preliminary)")
    second = segmentsToArray(pseudo, exported.segmentIds, volume)
    np.testing.assert_array_equal(second, fileLabels(previewDir))
    assert np.count_nonzero(second != first) > 0 and np.count_nonzero(second) > np.count_nonzero(first)
    assert arrayFromVolume(confidence) == pytest.approx(np.full(SHAPE, 0.7))
    assert session.review.slices[0]["index"] == 2 and session.review.currentSlice["index"] == 3  # still on slice 3
    assert segmentationSnapshot(user) == userBefore

    # Training ends: the final result replaces the preview in the same nodes, no longer preliminary.
    openGate(session)
    progress, _ = _pollUntil(session, lambda p, e: p.state != "running")
    assert progress.state == "done" and progress.imported, progress.message
    final = session.result
    assert not final.preliminary and session.preview is None
    assert final.segmentationNode is pseudo and final.confidenceNode is confidence
    assert pseudo.GetName() == "segmentation pseudo-labels" and confidence.GetName() == "scan confidence"
    assert pseudo.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
    assert "preliminary" not in progress.text
    predictions = Path(exported.runDir, "predictions", "image")
    np.testing.assert_array_equal(segmentsToArray(pseudo, exported.segmentIds, volume), fileLabels(predictions))
    assert arrayFromVolume(confidence) == pytest.approx(np.full(SHAPE, 0.8))
    assert session.review.slices == _fileReview(predictions)["slices"]
    assert sceneNodes(scene) == nodesWithPreview
    assert segmentationSnapshot(user) == userBefore  # training never touches the user's labels


def test_a_cancelled_training_keeps_its_preview_marked_preliminary(scene, inputs, engine, tmp_path):
    volume, user = inputs
    userBefore = segmentationSnapshot(user)
    session = _session(scene, tmp_path, engine, previews=2, gate=True, every=50)
    session.start(volume, user)
    _pollUntil(session, lambda p, e: p.previewed)
    session.cancel(graceSeconds=2.0)
    progress, _ = _pollUntil(session, lambda p, e: p.state != "running")
    assert progress.state == "cancelled"
    assert "preview at iteration 0 — preliminary" in progress.message
    assert session.result.preliminary and session.result.segmentationNode.GetScene() is scene
    assert segmentationSnapshot(user) == userBefore


def test_a_new_round_previews_into_new_nodes_and_a_deleted_preview_is_remade(scene, inputs, engine, tmp_path):
    volume, user = inputs
    session = _session(scene, tmp_path, engine, previews=3, gate=True)
    session.start(volume, user)
    for _ in range(3):  # the first round, each preview let through in turn
        _pollUntil(session, lambda p, e: p.previewed)
        openGate(session)
    _pollUntil(session, lambda p, e: p.state != "running")
    firstRound = session.result
    assert not firstRound.preliminary

    # The engine waits at each preview until the test opens the gate, so no poll can miss one.
    session.start(volume, user, retrain=True)
    _pollUntil(session, lambda p, e: p.previewed)
    preview = session.result
    assert preview.preliminary and preview.segmentationNode is not firstRound.segmentationNode
    assert firstRound.segmentationNode.GetName() == "segmentation pseudo-labels"  # the last round's result is kept
    scene.RemoveNode(preview.segmentationNode)  # the user deletes the preview while training runs
    openGate(session)
    progress, _ = _pollUntil(session, lambda p, e: p.previewed)
    remade = session.result
    assert remade.preliminary and remade.iteration == 10
    assert remade.segmentationNode.GetScene() is scene and remade.segmentationNode is not preview.segmentationNode
    openGate(session)
    _pollUntil(session, lambda p, e: p.previewed)
    openGate(session)
    progress, _ = _pollUntil(session, lambda p, e: p.state != "running")
    assert progress.state == "done", progress.message
    assert session.result.segmentationNode is remade.segmentationNode and not session.result.preliminary


def test_a_cancelled_retrain_shows_the_last_result_again_and_keeps_its_preview_hidden(scene, inputs, engine,
                                                                                      tmp_path):
    """The scene stays intact on cancel, as in a study (test_study.py): a retrain's preview comes into new nodes (the
    last result's are hidden, not written), and a cancelled retrain leaves the last result as it was, reviewed and
    shown again; the preview stays in the scene, hidden and marked preliminary."""
    volume, user = inputs
    session = _session(scene, tmp_path, engine)
    session.env["FAKE_ENGINE"] = json.dumps({"mode": "done"})
    first = session.start(volume, user, train={"iterations": 3})
    progress, _ = _pollUntil(session, lambda p, e: p.state != "running")
    assert progress.state == "done" and progress.imported, progress.message
    last = session.result
    session.selectReview(row=session.review.rowOfSlice(1))
    assert session.acceptCurrent() == 1  # an accepted slice: the next round trains on it, undo stays possible
    history = list(session.history)
    userBefore = segmentationSnapshot(user)
    lastLabels = segmentsToArray(last.segmentationNode, first.segmentIds, volume)
    lastConfidence = arrayFromVolume(last.confidenceNode).copy()
    lastNames = (last.segmentationNode.GetName(), last.confidenceNode.GetName())
    lastSlices = [dict(e) for e in session.review.slices]
    assert lastSlices[session.review.rowOfSlice(1)]["labeled"]

    def assertLastIntact():
        np.testing.assert_array_equal(segmentsToArray(last.segmentationNode, first.segmentIds, volume), lastLabels)
        np.testing.assert_array_equal(arrayFromVolume(last.confidenceNode), lastConfidence)
        assert (last.segmentationNode.GetName(), last.confidenceNode.GetName()) == lastNames
        assert last.segmentationNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
        assert last.confidenceNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
        assert not last.preliminary

    # A retrain shows its preview in new nodes; the last result's nodes are hidden, not written.
    session.env["FAKE_ENGINE"] = json.dumps({"mode": "preview", "previews": 3, "gate": True})
    session.start(volume, user, retrain=True, train={"iterations": 30})
    progress, _ = _pollUntil(session, lambda p, e: p.previewed)
    preview = session.result
    assert preview.preliminary and session.preview is preview and session.exported is not first
    assert preview.segmentationNode is not last.segmentationNode and preview.confidenceNode is not last.confidenceNode
    assert preview.segmentationNode.GetDisplayNode().GetVisibility()
    assert not last.segmentationNode.GetDisplayNode().GetVisibility()
    assert [c.GetForegroundVolumeID() for c in composites(scene)] == [preview.confidenceNode.GetID()] * 3
    assert session.review.slices != lastSlices and session.history == []
    assertLastIntact()
    session.review.select(session.review.rowOfSlice(3))  # the user looks at slice 3 meanwhile
    withPreview = sceneNodes(scene)

    cancelShowsTheLastResultsAgain(session, "Training was cancelled.",
                                   "preview at iteration 0 — preliminary stays in the scene, hidden", seconds=60.0)
    # The last result, as it was, is what the session reviews and the views show again.
    assertLastIntact()
    assert session.result is last and session.preview is None and session.previews == {}
    assert session.exported is first and session.history == history
    assert session.review.slices == lastSlices and session.review.currentSlice["index"] == 3
    assert last.segmentationNode.GetDisplayNode().GetVisibility()
    assert [c.GetForegroundVolumeID() for c in composites(scene)] == [last.confidenceNode.GetID()] * 3
    # The preview stays in the scene, hidden and marked preliminary; the user's labels are untouched.
    assert sceneNodes(scene) == withPreview
    assert preview.segmentationNode.GetScene() is scene and preview.confidenceNode.GetScene() is scene
    assert not preview.segmentationNode.GetDisplayNode().GetVisibility()
    assert preview.segmentationNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) == "0"
    assert preview.segmentationNode.GetName().endswith("(preview at iteration 0 — preliminary)")
    assert segmentationSnapshot(user) == userBefore
    assert session.lastRunDir == first.runDir  # the next retrain starts from the last good checkpoint
    assert not session.poll().restored  # said once, on the poll that brought the last result back
    assert session.undoAccept() == 1  # the accept of the last round can still be undone
