"""Run folder -> scene: a separate pseudo-label segmentation and the confidence overlay."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from SemiSegSlicerLib import jobexport, resultimport
from SemiSegSlicerLib.mrmlio import segmentsToArray

from mrmltesting import addSegmentation, addVolume, rotation, sceneNodes, segmentationSnapshot, slicer, writeLikeVolume

SHAPE = (5, 12, 14)  # K, J, I


@pytest.fixture
def job(scene, tmp_path):
    """A job exported from a rotated volume with two segments, and a fake engine run beside it."""
    rng = np.random.default_rng(1)
    volume = addVolume(scene, rng.normal(size=SHAPE).astype(np.float32), (0.9, 1.1, 3.0), (5.0, 6.0, -7.0),
                       rotation(25, "z") @ rotation(-15, "y"), name="scan")
    a = np.zeros(SHAPE, np.uint8)
    a[2, 3:6, 3:9] = 1
    b = np.zeros(SHAPE, np.uint8)
    b[2, 7:10, 2:5] = 1
    user = addSegmentation(scene, volume, {"myocardium": ((0.2, 0.8, 0.3), a), "blood pool": ((0.9, 0.1, 0.4), b)})
    exported = jobexport.exportJob(tmp_path / "job", volume, user)
    pseudo = np.zeros(SHAPE, np.uint8)
    pseudo[:, 2:6, 3:10] = 1
    pseudo[1:4, 7:11, 1:6] = 2
    confidence = rng.uniform(0.5, 1.0, size=SHAPE).astype(np.float32)
    prediction = os.path.join(exported.runDir, "predictions", "image")
    writeLikeVolume(pseudo, volume, os.path.join(prediction, "labels.nii.gz"))
    writeLikeVolume(confidence, volume, os.path.join(prediction, "confidence.nii.gz"))
    review = {"axis": 2, "statistic": "mean confidence", "slices": [
        {"index": 4, "confidence": 0.6, "foreground_fraction": 0.2, "labeled": False},
        {"index": 2, "confidence": 0.9, "foreground_fraction": 0.3, "labeled": True}]}
    with open(os.path.join(prediction, "review.json"), "w") as f:
        json.dump(review, f)
    return {"volume": volume, "user": user, "exported": exported, "pseudo": pseudo, "review": review,
            "prediction": prediction}


def test_import_makes_a_separate_segmentation_with_the_users_names_and_colours(scene, job):
    before = segmentationSnapshot(job["user"])
    result = resultimport.importResults(scene, job["exported"])
    imported = result.segmentationNode
    assert imported.GetID() != job["user"].GetID()
    assert imported.GetName() == "segmentation pseudo-labels"
    theirs, ours = imported.GetSegmentation(), job["user"].GetSegmentation()
    assert theirs.GetNumberOfSegments() == ours.GetNumberOfSegments() == 2
    for n in range(2):
        assert theirs.GetNthSegmentID(n) == ours.GetNthSegmentID(n)
        assert theirs.GetNthSegment(n).GetName() == ours.GetNthSegment(n).GetName()
        assert theirs.GetNthSegment(n).GetColor() == pytest.approx(ours.GetNthSegment(n).GetColor())
    labels = segmentsToArray(imported, job["exported"].segmentIds, job["volume"])
    np.testing.assert_array_equal(labels, job["pseudo"])  # same grid, rotated geometry included
    assert segmentationSnapshot(job["user"]) == before  # the user's labels, bit for bit
    assert result.review == job["review"]


def test_confidence_overlay_is_a_perceptual_foreground_layer(scene, job):
    result = resultimport.importResults(scene, job["exported"])
    confidence = result.confidenceNode
    assert confidence.IsA("vtkMRMLScalarVolumeNode")
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    assert composites.GetNumberOfItems() == 3
    for i in range(composites.GetNumberOfItems()):
        composite = composites.GetItemAsObject(i)
        assert composite.GetForegroundVolumeID() == confidence.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.4)
        assert composite.GetBackgroundVolumeID() == job["volume"].GetID()
    display = confidence.GetDisplayNode()
    assert display.GetColorNode().GetName() in ("Viridis", "Inferno")
    assert not display.GetAutoWindowLevel()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((1 / 3, 1.0))

    resultimport.setConfidenceOpacity(scene, confidence, 0.7)
    assert composites.GetItemAsObject(0).GetForegroundOpacity() == pytest.approx(0.7)
    resultimport.hideConfidence(scene, confidence)
    assert all(not composites.GetItemAsObject(i).GetForegroundVolumeID() for i in range(3))
    resultimport.showConfidence(scene, confidence)
    assert all(composites.GetItemAsObject(i).GetForegroundVolumeID() == confidence.GetID() for i in range(3))
    with pytest.raises(ValueError):
        resultimport.setConfidenceOpacity(scene, confidence, 1.5)


def test_perceptual_colour_table_is_reused_or_made_once(scene):
    viridis = resultimport.perceptualColorNode(scene)
    assert viridis.GetName() == "Viridis" and viridis.GetNumberOfColors() == 256
    assert resultimport.perceptualColorNode(scene) is viridis
    first, last = [0.0] * 4, [0.0] * 4
    viridis.GetColor(0, first)
    viridis.GetColor(255, last)
    assert first[:3] == pytest.approx([0x44 / 255, 0x01 / 255, 0x54 / 255])  # dark violet ...
    assert last[:3] == pytest.approx([0xFD / 255, 0xE7 / 255, 0x25 / 255])  # ... to yellow
    existing = slicer.vtkMRMLColorTableNode()
    existing.SetName("Inferno")
    scene.AddNode(existing)
    assert resultimport.perceptualColorNode(scene, "Inferno") is existing  # Slicer's own table wins


def test_slicers_own_viridis_is_preferred_and_making_one_logs_no_vtk_error(scene, capfd):
    made = resultimport.perceptualColorNode(scene)  # the wheel has no colour files: made here
    assert "ERR|" not in capfd.readouterr().err, "making the colour table logged a VTK error"
    assert made.GetName() == "Viridis" and made.GetColorName(0) == "Viridis0"
    slicersOwn = slicer.vtkMRMLColorTableNode()  # as Slicer's colour logic adds ColorFiles/Viridis.txt
    slicersOwn.SetName("Viridis")
    slicersOwn.SetSingletonTag("FileViridis.txt")
    scene.AddNode(slicersOwn)
    assert slicersOwn.GetID() == "vtkMRMLColorTableNodeFileViridis.txt"
    assert resultimport.perceptualColorNode(scene) is slicersOwn  # not the one made earlier with the same name


def test_import_refuses_labels_on_another_grid_and_leaves_the_scene_alone(scene, job):
    writeLikeVolume(np.zeros((5, 12, 13), np.uint8), job["volume"], os.path.join(job["prediction"], "labels.nii.gz"))
    nodes = sceneNodes(scene)
    with pytest.raises(ValueError, match="not on the grid"):
        resultimport.importResults(scene, job["exported"])
    assert sceneNodes(scene) == nodes


def test_import_refuses_unknown_labels(scene, job):
    writeLikeVolume(np.full(SHAPE, 3, np.uint8), job["volume"], os.path.join(job["prediction"], "labels.nii.gz"))
    nodes = sceneNodes(scene)
    with pytest.raises(ValueError, match="label 3"):
        resultimport.importResults(scene, job["exported"])
    assert sceneNodes(scene) == nodes


def test_missing_prediction_is_a_clear_error(scene, job):
    os.remove(os.path.join(job["prediction"], "confidence.nii.gz"))
    nodes = sceneNodes(scene)
    with pytest.raises(FileNotFoundError, match="confidence"):
        resultimport.importResults(scene, job["exported"])
    assert sceneNodes(scene) == nodes
