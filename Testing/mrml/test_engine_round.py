"""A whole round with the real engine on a real ACDC volume: scene -> job folder ->
``python -m semiseg train --job`` (a few iterations, small size, CPU) -> the engine's preview shown while
it trains -> pseudo-labels, confidence overlay and review list back in the scene -> accept a slice -> undo.

This is the one test of this folder that needs the engine (torch, MONAI). The engine is part of this
repository (``pip install -e .``), so a missing engine fails here instead of skipping.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time

import numpy as np
import pytest

from SemiSegSlicerLib import labeledslices, resultimport
from SemiSegSlicerLib.mrmlio import arrayFromVolume, readVolume, segmentsToArray
from SemiSegSlicerLib.session import Session

from mrmltesting import DATA, ROOT, addSegmentation, segmentationSnapshot

pytestmark = pytest.mark.engine

CASE = "patient003_frame01"
CLASSES = (("right ventricle", (0.9, 0.3, 0.3)), ("myocardium", (0.3, 0.8, 0.3)), ("left ventricle", (0.3, 0.4, 0.9)))


@pytest.fixture(scope="module")
def enginePath():
    if importlib.util.find_spec("semiseg") is None:
        pytest.fail("the engine package `semiseg` is not importable: run `pip install -e .` at the repository root")
    return [str(ROOT / "Logic")]


@pytest.fixture
def acdcCase(scene):
    image, labels = DATA / "acdc" / "images" / f"{CASE}.nii.gz", DATA / "acdc" / "labels" / f"{CASE}.nii.gz"
    if not image.is_file() or not labels.is_file():
        pytest.fail(
            f"real ACDC data missing at {image.parent.parent}: the tests need ../shared/data beside the checkout"
        )
    volume = readVolume(scene, image, CASE)
    labelNode = readVolume(scene, labels, "reference", "vtkMRMLLabelMapVolumeNode")
    reference = arrayFromVolume(labelNode)
    scene.RemoveNode(labelNode)
    painted = [k for k in range(reference.shape[0]) if np.any(reference[k] == 3)]
    keep = [painted[len(painted) // 3], painted[2 * len(painted) // 3]]  # two labelled slices, as a user would
    sparse = np.zeros_like(reference)
    sparse[keep] = reference[keep]
    segments = {name: (color, sparse == value) for value, (name, color) in enumerate(CLASSES, start=1)}
    segmentation = addSegmentation(scene, volume, segments, name="ACDC labels")
    return volume, segmentation, reference, keep


def test_module_methods_are_registered_in_the_engine(enginePath):
    import test_extension_structure

    from semiseg.methods import METHODS

    missing = test_extension_structure.METHODS - set(METHODS)
    assert not missing, f"the module offers methods the engine does not register: {sorted(missing)}"


def test_whole_round_on_acdc(scene, acdcCase, enginePath, tmp_path):
    volume, segmentation, reference, keep = acdcCase
    labeledslices.markChecked(segmentation, 2, 0)  # the basal slice, checked and empty
    userBefore = segmentationSnapshot(segmentation)
    session = Session(scene, sys.executable, str(tmp_path / "cache"), pythonPath=enginePath)
    exported = session.start(
        volume,
        segmentation,
        method="unimatch",
        train={"iterations": 4, "size": 64, "device": "cpu", "batch_labeled": 2, "batch_unlabeled": 2, "seed": 0},
    )
    assert exported.labeledSlices == sorted({0, *keep})
    assert exported.job["axis"] == 2
    deadline, events, previews = time.monotonic() + 600, [], []
    while True:
        progress = session.poll()
        events += progress.events
        if progress.previewed:
            previews.append((session.result.iteration, session.result.segmentationNode, progress.text))
            assert segmentationSnapshot(segmentation) == userBefore  # a preview never touches the user's labels
        if progress.state != "running":
            break
        assert time.monotonic() < deadline, "the engine did not finish a 4-iteration run in 10 minutes"
        time.sleep(0.2)
    assert progress.state == "done", progress.message
    kinds = [event["event"] for event in events]
    assert kinds[0] == "setup" and "start" in kinds and "done" in kinds
    # The engine's first preview (iteration 0: the interpolation of the labelled slices) was shown while it
    # trained, marked preliminary; the final result then replaced it in the same node.
    assert previews and previews[0][0] == 0 and "preview at iteration 0 — preliminary" in previews[0][2]
    assert session.result.segmentationNode is previews[-1][1] and not session.result.preliminary
    assert events[0]["device"] == "cpu" and progress.warnings == []  # CPU asked for: nothing to warn about
    with open(f"{exported.runDir}/status.json") as f:
        assert json.load(f)["state"] == "done"

    result = session.result
    pseudo = result.segmentationNode
    assert pseudo.GetID() != segmentation.GetID()
    names = [pseudo.GetSegmentation().GetNthSegment(n).GetName() for n in range(3)]
    assert names == [name for name, _ in CLASSES]
    predicted = segmentsToArray(pseudo, exported.segmentIds, volume)
    assert predicted.shape == reference.shape and predicted.max() <= 3
    composite = scene.GetNodesByClass("vtkMRMLSliceCompositeNode").GetItemAsObject(0)
    assert composite.GetForegroundVolumeID() == result.confidenceNode.GetID()
    assert composite.GetForegroundOpacity() == pytest.approx(resultimport.DEFAULT_OPACITY)
    confidence = arrayFromVolume(result.confidenceNode)
    assert confidence.shape == reference.shape
    assert confidence.min() >= 0.25 - 1e-4 and confidence.max() <= 1.0 + 1e-4  # in [1/C, 1]
    assert session.review is not None and len(session.review) == reference.shape[0]
    assert segmentationSnapshot(segmentation) == userBefore  # training never touches the user's labels

    before = segmentsToArray(segmentation, exported.segmentIds, volume)
    session.review.select(0)
    index = session.acceptCurrent()
    after = segmentsToArray(segmentation, exported.segmentIds, volume)
    np.testing.assert_array_equal(after[index], predicted[index])
    others = [k for k in range(before.shape[0]) if k != index]
    np.testing.assert_array_equal(after[others], before[others])
    session.undoAccept()
    np.testing.assert_array_equal(segmentsToArray(segmentation, exported.segmentIds, volume), before)
