"""Which slices count as labelled: painted, checked (empty), the slicing axis, the slice a view shows."""

from __future__ import annotations

import numpy as np
import pytest

from SemiSegSlicerLib import labeledslices

from mrmltesting import addSegmentation, addVolume, rotation, sliceNode


def _labels():
    labels = np.zeros((8, 20, 30), np.uint8)  # K, J, I
    labels[2, 5:15, 4:20] = 1
    labels[5, 8:12, 10:12] = 2
    return labels


def test_checked_slices_live_on_the_segmentation(scene):
    volume = addVolume(scene, np.zeros((8, 20, 30), np.float32))
    segmentation = addSegmentation(scene, volume, {"organ": ((1, 1, 0), _labels() == 1)})
    assert labeledslices.checkedSlices(segmentation) == (None, [])
    assert labeledslices.markChecked(segmentation, 2, 7) == [7]
    assert labeledslices.markChecked(segmentation, 2, 0) == [0, 7]
    assert labeledslices.checkedSlices(segmentation) == (2, [0, 7])
    with pytest.raises(ValueError, match="along axis 2"):
        labeledslices.markChecked(segmentation, 1, 3)
    assert labeledslices.markChecked(segmentation, 2, 7, checked=False) == [0]
    labeledslices.markChecked(segmentation, 2, 0, checked=False)
    assert segmentation.GetAttribute(labeledslices.ATTRIBUTE) is None
    segmentation.SetAttribute(labeledslices.ATTRIBUTE, "{not json")
    with pytest.raises(ValueError, match="unreadable"):
        labeledslices.checkedSlices(segmentation)


def test_view_axis_and_index_on_an_axis_aligned_volume(scene):
    volume = addVolume(scene, np.zeros((8, 20, 30), np.float32), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, -4.0))
    red, yellow, green = (sliceNode(scene, name) for name in ("Red", "Yellow", "Green"))
    red.JumpSliceByOffsetting(0.0, 0.0, 6.0)  # z = -4 + 2 k  ->  k = 5
    assert labeledslices.viewAxisAndIndex(volume, red) == (2, 5)
    yellow.JumpSliceByOffsetting(12.2, 0.0, 0.0)
    assert labeledslices.viewAxisAndIndex(volume, yellow) == (0, 12)
    green.JumpSliceByOffsetting(0.0, 3.0, 0.0)
    assert labeledslices.viewAxisAndIndex(volume, green) == (1, 3)
    red.JumpSliceByOffsetting(0.0, 0.0, 100.0)
    assert labeledslices.viewAxisAndIndex(volume, red) is None  # outside the volume


def test_view_axis_on_a_rotated_volume(scene):
    volume = addVolume(scene, np.zeros((8, 20, 30), np.float32), direction=rotation(30, "z"))
    red, yellow = sliceNode(scene, "Red"), sliceNode(scene, "Yellow")
    red.JumpSliceByOffsetting(0.0, 0.0, 4.0)
    assert labeledslices.viewAxisAndIndex(volume, red) == (2, 4)
    assert labeledslices.viewAxisAndIndex(volume, yellow) is None  # oblique to the grid
    yellow.RotateToVolumePlane(volume)
    assert labeledslices.viewAxisAndIndex(volume, yellow)[0] == 0


def test_labeled_slices_of_a_segmentation_agree_with_the_export(scene, tmp_path):
    from SemiSegSlicerLib.jobexport import exportJob

    volume = addVolume(scene, np.zeros((8, 20, 30), np.float32))
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "no segment")
    assert labeledslices.labeledSlicesOfSegmentation(empty, volume) == (2, [])
    segmentation = addSegmentation(scene, volume, {"organ": ((1, 1, 0), _labels() == 1),
                                                   "lesion": ((1, 0, 0), _labels() == 2)})
    assert labeledslices.labeledSlicesOfSegmentation(segmentation, volume) == (2, [2, 5])
    labeledslices.markChecked(segmentation, 2, 7)
    assert labeledslices.labeledSlicesOfSegmentation(segmentation, volume) == (2, [2, 5, 7])
    assert exportJob(tmp_path / "job", volume, segmentation).labeledSlices == [2, 5, 7]
