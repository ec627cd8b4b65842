"""Scene -> job folder: geometry, labels, labelled slices and job.json (docs/JOB_FORMAT.md)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk

from semiseg.contract import JOB_FORMAT_VERSION, JobFields
from SemiSegSlicerLib import jobexport, labeledslices
from SemiSegSlicerLib.mrmlio import ijkToRasMatrix, readVolume

from mrmltesting import addSegmentation, addVolume, rotation, sceneNodes, segmentationSnapshot

SHAPE = (6, 9, 11)  # K, J, I
SPACING = (0.7, 0.8, 2.5)
ORIGIN = (10.0, -20.0, 30.0)
DIRECTION = rotation(30, "z") @ rotation(20, "x")


def _masks():
    rv = np.zeros(SHAPE, np.uint8)
    rv[1, 2:5, 3:7] = 1
    lv = np.zeros(SHAPE, np.uint8)
    lv[1, 6:8, 1:3] = 1
    lv[3, 4:6, 4:9] = 1
    return rv, lv


@pytest.fixture
def rotated(scene):
    image = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    volume = addVolume(scene, image, SPACING, ORIGIN, DIRECTION, name="scan")
    rv, lv = _masks()
    segmentation = addSegmentation(
        scene, volume, {"right ventricle": ((1, 0, 0), rv), "left ventricle": ((0, 0, 1), lv)}
    )
    return volume, segmentation, image


def _lpsGeometry(volumeNode):
    matrix = ijkToRasMatrix(volumeNode)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    lps = np.diag([-1.0, -1.0, 1.0])
    return spacing, lps @ matrix[:3, 3], lps @ (matrix[:3, :3] / spacing)


def test_export_keeps_rotated_geometry_and_labels(scene, rotated, tmp_path):
    volume, segmentation, image = rotated
    before = segmentationSnapshot(segmentation)
    nodesBefore = sceneNodes(scene)
    exported = jobexport.exportJob(
        tmp_path / "job",
        volume,
        segmentation,
        method="fixmatch",
        train={"iterations": 7, "size": 64, "device": "cpu", "seed": None},
    )

    spacing, origin, direction = _lpsGeometry(volume)
    rv, lv = _masks()
    for name, expected in (("image.nrrd", image), ("labels.nrrd", rv * 1 + lv * 2)):
        written = sitk.ReadImage(str(tmp_path / "job" / name))
        assert written.GetSize() == SHAPE[::-1]
        np.testing.assert_allclose(written.GetSpacing(), SPACING, atol=1e-6)
        np.testing.assert_allclose(written.GetSpacing(), spacing, atol=1e-6)
        np.testing.assert_allclose(written.GetOrigin(), origin, atol=1e-6)
        np.testing.assert_allclose(np.array(written.GetDirection()).reshape(3, 3), direction, atol=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), expected)
    assert sitk.ReadImage(str(tmp_path / "job" / "labels.nrrd")).GetPixelID() == sitk.sitkUInt8

    # and back into Slicer: same IJK-to-RAS matrix
    reread = readVolume(scene, tmp_path / "job" / "image.nrrd", "reread")
    np.testing.assert_allclose(ijkToRasMatrix(reread), ijkToRasMatrix(volume), atol=1e-6)
    scene.RemoveNode(reread)

    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert set(job) == {f.name for f in dataclasses.fields(JobFields)}
    assert job["format_version"] == JOB_FORMAT_VERSION and job["recipe"] == "auto" and job["completion"] == {}
    assert job["classes"] == ["background", "right ventricle", "left ventricle"]
    assert job["method"] == "fixmatch"
    assert job["train"] == {"iterations": 7, "size": 64, "device": "cpu"}
    assert job["axis"] == "auto" and job["labeled_slices"] == []
    assert job["run_dir"] == "run" and job["predict"] is True and job["output_format"] == "nrrd"
    assert job["keep_largest_island"] == "auto"
    assert exported.labeledSlices == [1, 3]
    assert exported.segmentIds == [s["id"] for s in jobexport.segmentList(segmentation)]
    assert jobexport.loadExportedJob(tmp_path / "job") == exported

    assert segmentationSnapshot(segmentation) == before
    assert sceneNodes(scene) == nodesBefore


def test_checked_empty_slice_counts_as_labeled(scene, rotated, tmp_path):
    volume, segmentation, _ = rotated
    labeledslices.markChecked(segmentation, 2, 4)
    labeledslices.markChecked(segmentation, 2, 3)  # painted and checked: listed once
    exported = jobexport.exportJob(tmp_path / "job", volume, segmentation)
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["axis"] == 2
    assert job["labeled_slices"] == [4]  # labelled although it holds no label voxel
    assert exported.labeledSlices == [1, 3, 4]


def test_keep_largest_island_is_the_contracts_choice(scene, rotated, tmp_path):
    from semiseg.job.reading import load_job

    volume, segmentation, _ = rotated
    for word, written in (("all", True), ("none", False)):
        jobexport.exportJob(tmp_path / word, volume, segmentation, keepLargestIsland=word)
        assert json.loads((tmp_path / word / "job.json").read_text())["keep_largest_island"] is written
        assert load_job(tmp_path / word).keep_largest_island is written  # the engine reads it as written
    with pytest.raises(ValueError, match="auto, all, none"):
        jobexport.exportJob(tmp_path / "bad", volume, segmentation, keepLargestIsland="largest")
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_unlabeled_volumes_are_written(scene, rotated, tmp_path):
    volume, segmentation, _ = rotated
    extra = addVolume(scene, np.ones((4, 5, 6), np.int16), name="other scan/2")
    exported = jobexport.exportJob(tmp_path / "job", volume, segmentation, unlabeledVolumes=[extra, volume, None])
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["unlabeled"] == ["unlabeled01_other_scan_2.nrrd"]
    assert sitk.ReadImage(str(tmp_path / "job" / job["unlabeled"][0])).GetSize() == (6, 5, 4)
    assert exported.unlabeled == {"unlabeled01_other_scan_2": extra.GetID()}


def test_export_refuses_what_cannot_train(scene, tmp_path):
    volume = addVolume(scene, np.zeros((4, 5, 6), np.float32))
    empty = addSegmentation(scene, volume, {})
    with pytest.raises(ValueError, match="no segment"):
        jobexport.exportJob(tmp_path / "a", volume, empty)
    unpainted = addSegmentation(scene, volume, {"liver": ((0, 1, 0), np.zeros((4, 5, 6), np.uint8))})
    with pytest.raises(ValueError, match="no labelled slice"):
        jobexport.exportJob(tmp_path / "b", volume, unpainted)
    labeledslices.markChecked(unpainted, 2, 0)
    jobexport.exportJob(tmp_path / "c", volume, unpainted)  # a checked empty slice is enough
    with pytest.raises(FileExistsError):
        jobexport.exportJob(tmp_path / "c", volume, unpainted)
    with pytest.raises(ValueError, match="axis 1"):
        jobexport.exportJob(tmp_path / "d", volume, unpainted, axis=1)


def test_export_refuses_different_transforms(scene, rotated, tmp_path):
    volume, segmentation, _ = rotated
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(ValueError, match="harden"):
        jobexport.exportJob(tmp_path / "job", volume, segmentation)
