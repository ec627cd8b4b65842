"""Review list, jumping the slice views, accepting one slice and undoing it."""

from __future__ import annotations

import numpy as np
import pytest

from SemiSegSlicerLib import jobexport, labeledslices, review
from SemiSegSlicerLib.mrmlio import segmentsToArray
from SemiSegSlicerLib.resultimport import importPseudoLabels

from mrmltesting import addSegmentation, addVolume, rotation, sliceNode, writeLikeVolume

SHAPE = (6, 10, 12)  # K, J, I
REVIEW = {"axis": 2, "statistic": "mean confidence", "slices": [
    {"index": 4, "confidence": 0.55, "foreground_fraction": 0.1, "labeled": False},
    {"index": 0, "confidence": 0.70, "foreground_fraction": 0.0, "labeled": False},
    {"index": 2, "confidence": 0.95, "foreground_fraction": 0.2, "labeled": True}]}


def test_review_model_steps_from_least_confident():
    model = review.ReviewModel(REVIEW)
    assert len(model) == 3 and model.axis == 2
    assert model.currentSlice["index"] == 4
    assert model.next()["index"] == 0
    assert model.next()["index"] == 2
    assert model.next()["index"] == 4  # wraps
    assert model.previous()["index"] == 2
    assert model.select(1)["index"] == 0
    with pytest.raises(IndexError):
        model.select(3)
    model.setLabeled(0)
    assert model.slices[1]["labeled"] is True
    assert review.ReviewModel({"axis": 0, "slices": []}).next() is None
    with pytest.raises(ValueError, match="malformed"):
        review.ReviewModel({"slices": []})


def test_review_model_reads_the_engine_file(tmp_path):
    import json

    path = tmp_path / "review.json"
    path.write_text(json.dumps(REVIEW))
    assert [s["index"] for s in review.ReviewModel.fromFile(path).slices] == [4, 0, 2]


def test_jump_brings_every_view_through_the_slice(scene):
    volume = addVolume(scene, np.zeros(SHAPE, np.float32), (0.5, 0.5, 3.0), (1.0, 2.0, -6.0), rotation(40, "z"))
    ras = review.sliceCenterRas(volume, 2, 4)
    assert ras[2] == pytest.approx(-6.0 + 3.0 * 4)
    review.jumpSlices(scene, ras)
    red = sliceNode(scene, "Red")
    assert red.GetSliceOffset() == pytest.approx(ras[2])
    assert labeledslices.viewAxisAndIndex(volume, red) == (2, 4)
    for name in ("Yellow", "Green"):  # the other views pass through the slice's centre too
        matrix = sliceNode(scene, name).GetSliceToRAS()
        normal = np.array([matrix.GetElement(r, 2) for r in range(3)])
        origin = np.array([matrix.GetElement(r, 3) for r in range(3)])
        assert np.dot(normal, np.array(ras) - origin) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(IndexError):
        review.sliceCenterRas(volume, 2, 6)


@pytest.fixture
def pair(scene, tmp_path):
    """The user's segmentation (two segments) and pseudo-labels imported as the engine writes them."""
    volume = addVolume(scene, np.zeros(SHAPE, np.float32), (0.8, 0.8, 2.0), (3.0, -2.0, 1.0), rotation(30, "x"))
    a = np.zeros(SHAPE, np.uint8)
    a[1, 2:5, 2:6] = 1
    a[3, 1:4, 1:4] = 1
    b = np.zeros(SHAPE, np.uint8)
    b[1, 6:9, 6:10] = 1
    b[3, 5:9, 5:9] = 1
    user = addSegmentation(scene, volume, {"a": ((1, 0, 0), a), "b": ((0, 1, 0), b)})
    segments = jobexport.segmentList(user)
    pseudo = np.zeros(SHAPE, np.uint8)
    pseudo[:, 0:5, 0:6] = 1
    pseudo[:, 5:10, 6:12] = 2
    pseudo[5] = 0
    writeLikeVolume(pseudo, volume, str(tmp_path / "labels.nrrd"))
    pseudoNode = importPseudoLabels(scene, str(tmp_path / "labels.nrrd"), volume, segments, "pseudo")
    return volume, user, pseudoNode, [s["id"] for s in segments], pseudo


def test_accept_changes_only_that_slice_and_undo_restores_it(scene, pair):
    volume, user, pseudoNode, ids, pseudo = pair
    before = segmentsToArray(user, ids, volume)
    pseudoBefore = segmentsToArray(pseudoNode, ids, volume)
    record = review.acceptSlice(user, pseudoNode, volume, ids, 2, 3)
    after = segmentsToArray(user, ids, volume)
    np.testing.assert_array_equal(after[3], pseudo[3])
    others = [k for k in range(SHAPE[0]) if k != 3]
    np.testing.assert_array_equal(after[others], before[others])
    np.testing.assert_array_equal(segmentsToArray(pseudoNode, ids, volume), pseudoBefore)
    assert labeledslices.checkedSlices(user) == (2, [3])
    assert user.GetSegmentation().GetNumberOfLayers() == 1  # still one shared labelmap layer

    review.undoAccept(record, user, volume)
    np.testing.assert_array_equal(segmentsToArray(user, ids, volume), before)
    assert labeledslices.checkedSlices(user) == (None, [])


def test_accepting_an_empty_slice_makes_it_labelled(scene, pair, tmp_path):
    volume, user, pseudoNode, ids, _ = pair
    record = review.acceptSlice(user, pseudoNode, volume, ids, 2, 5)  # the pseudo-labels are empty there
    assert not segmentsToArray(user, ids, volume)[5].any()
    exported = jobexport.exportJob(tmp_path / "job", volume, user)
    assert 5 in exported.labeledSlices and exported.job["labeled_slices"] == [5]
    review.undoAccept(record, user, volume)
    assert labeledslices.checkedSlices(user) == (None, [])


def test_accept_takes_the_users_correction_of_the_pseudo_labels(scene, pair):
    volume, user, pseudoNode, ids, pseudo = pair
    corrected = segmentsToArray(pseudoNode, [ids[0]], volume)
    corrected[0] = 0  # the user erased segment "a" on slice 0 of the pseudo-labels
    from SemiSegSlicerLib.mrmlio import writeSegmentArrays

    writeSegmentArrays(pseudoNode, {ids[0]: corrected}, volume)
    review.acceptSlice(user, pseudoNode, volume, ids, 2, 0)
    expected = pseudo[0].copy()
    expected[expected == 1] = 0
    np.testing.assert_array_equal(segmentsToArray(user, ids, volume)[0], expected)


def test_accept_refuses_another_axis_and_changes_nothing(scene, pair):
    volume, user, pseudoNode, ids, _ = pair
    labeledslices.markChecked(user, 2, 0)
    before = segmentsToArray(user, ids, volume)
    with pytest.raises(ValueError, match="axis"):
        review.acceptSlice(user, pseudoNode, volume, ids, 1, 2)
    np.testing.assert_array_equal(segmentsToArray(user, ids, volume), before)
    assert labeledslices.checkedSlices(user) == (2, [0])
    user.GetSegmentation().RemoveSegment(ids[1])
    with pytest.raises(ValueError, match="no longer"):
        review.acceptSlice(user, pseudoNode, volume, ids, 2, 2)
