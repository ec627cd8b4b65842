"""Helpers for testing SemiSegSlicerLib against the real MRML classes of the ``slicer-core`` wheel.

Install with ``pip install -e ".[test]"`` (trame-slicer[standalone]==2.0.0, which
pins slicer-core 5.11 and VTK 9.6.0). The MRML classes are then imported as in Slicer::

    import slicer
    scene = slicer.vtkMRMLScene()
    from slicer import vtkMRMLScalarVolumeNode, vtkSlicerSegmentationsModuleLogic

Beware a folder named ``slicer`` on ``sys.path``'s entries: slicer-core's ``slicer`` namespace package
extends its ``__path__`` with every ``<entry>/slicer`` folder and imports every module it finds there.
That is why these tests live in ``Testing/mrml``, not ``Testing/slicer``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import vtk
from vtk.util import numpy_support

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODULE_DIR = ROOT / "SemiSegSlicer"
DATA = ROOT.parent / "shared" / "data"


import slicer  # noqa: E402 - the slicer-core wheel; a missing wheel is an error, never a skip

if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


SLICE_VIEWS = (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))


class SceneSetup:
    """A scene with what the Slicer application sets up: application logic, default colour tables,
    the segmentations logic (segmentation converters) and the three slice views' nodes."""

    def __init__(self):
        self.scene = slicer.vtkMRMLScene()
        self.appLogic = slicer.vtkSlicerApplicationLogic()
        self.appLogic.SetMRMLScene(self.scene)
        self.appLogic.GetColorLogic().SetMRMLScene(self.scene)
        self.appLogic.GetColorLogic().AddDefaultColorNodes()
        self.appLogic.SetSliceLogics(vtk.vtkCollection())
        self.segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentationsLogic.SetMRMLScene(self.scene)
        self.segmentationsLogic.SetMRMLApplicationLogic(self.appLogic)
        self.appLogic.SetModuleLogic("Segmentations", self.segmentationsLogic)
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        self.sliceLogics = []
        for name, orientation in SLICE_VIEWS:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(self.appLogic)
            logic.SetMRMLScene(self.scene)
            sliceNode = logic.AddSliceNode(name)
            sliceNode.SetOrientation(orientation)
            self.appLogic.GetSliceLogics().AddItem(logic)
            self.sliceLogics.append(logic)


def rotation(degrees: float, axis: str = "z") -> np.ndarray:
    """A 3x3 rotation about one RAS axis."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def addVolume(scene, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None,
              name: str = "volume"):
    """A scalar volume node holding ``array`` (K, J, I) with the given RAS geometry."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtkArray = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=1)
    imageData.AllocateScalars(vtkArray.GetDataType(), 1)
    imageData.GetPointData().GetScalars().DeepCopy(vtkArray)
    node.SetAndObserveImageData(imageData)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    if direction is not None:
        matrix = vtk.vtkMatrix4x4()
        for r in range(3):
            for c in range(3):
                matrix.SetElement(r, c, float(direction[r][c]))
        node.SetIJKToRASDirectionMatrix(matrix)
    node.CreateDefaultDisplayNodes()
    return node


def addSegmentation(scene, volumeNode, segments: dict, name: str = "segmentation"):
    """A segmentation node; ``segments`` maps a name to ``(color, mask (K, J, I))``."""
    from SemiSegSlicerLib.mrmlio import ijkToRasMatrix, orientedImageFromArray

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    for segmentName, (color, mask) in segments.items():
        segmentId = node.GetSegmentation().AddEmptySegment("", segmentName, color)
        if np.any(mask):
            image = orientedImageFromArray(mask, ijkToRasMatrix(volumeNode))
            assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                image, node, segmentId, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    return node


def segmentationSnapshot(node) -> dict:
    """Everything that makes up a segmentation, bit for bit: segments, their source labelmaps
    (extent, geometry, voxels), names, colours, label values and the node's attributes."""
    segmentation = node.GetSegmentation()
    snapshot = {"attributes": {name: node.GetAttribute(name) for name in node.GetAttributeNames()},
                "source": segmentation.GetSourceRepresentationName(), "segments": []}
    for n in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(n)
        image = segment.GetRepresentation(segmentation.GetSourceRepresentationName())
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        scalars = image.GetPointData().GetScalars()
        snapshot["segments"].append({
            "id": segmentation.GetNthSegmentID(n), "name": segment.GetName(), "color": segment.GetColor(),
            "label": segment.GetLabelValue(), "extent": image.GetExtent(),
            "matrix": [matrix.GetElement(r, c) for r in range(4) for c in range(4)],
            "voxels": numpy_support.vtk_to_numpy(scalars).tobytes() if scalars is not None else b"",
        })
    return snapshot


def sceneNodes(scene) -> list[tuple[str, str]]:
    """(ID, class) of every node in the scene, in scene order."""
    return [(scene.GetNthNode(i).GetID(), scene.GetNthNode(i).GetClassName()) for i in range(scene.GetNumberOfNodes())]


def writeLikeVolume(array: np.ndarray, volumeNode, path: str) -> None:
    """Write ``array`` (K, J, I) on ``volumeNode``'s grid with SimpleITK, as the engine writes its outputs
    (LPS header from Slicer's RAS geometry)."""
    import SimpleITK as sitk

    from SemiSegSlicerLib.mrmlio import ijkToRasMatrix

    matrix = ijkToRasMatrix(volumeNode)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    lpsFromRas = np.diag([-1.0, -1.0, 1.0])
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in lpsFromRas @ matrix[:3, 3]))
    image.SetDirection(tuple(float(v) for v in (lpsFromRas @ (matrix[:3, :3] / spacing)).ravel()))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sitk.WriteImage(image, path)


def sliceNode(scene, name: str):
    """The slice node of the view called ``name`` (Red, Yellow, Green)."""
    nodes = scene.GetNodesByClassByName("vtkMRMLSliceNode", name)
    assert nodes.GetNumberOfItems() == 1, f"no slice node {name}"
    return nodes.GetItemAsObject(0)


def composites(scene) -> list:
    """The slice composite nodes of the scene (one a slice view)."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


# -- jobs run by the fake engine (fakeengine.py) --------------------------------------------------------------


def fakeEngineSession(sessionClass, scene, tmp_path, engine, mode: str = "done", **fake):
    """A ``Session`` or ``StudySession`` (``sessionClass``) whose jobs the fake engine installed at ``engine`` runs
    in ``mode`` with the options ``fake`` (``FAKE_ENGINE``); its cache in ``tmp_path``."""
    env = dict(os.environ, FAKE_ENGINE=json.dumps({"mode": mode, **fake}))
    return sessionClass(scene, sys.executable, str(tmp_path / "cache"), env=env, pythonPath=[engine])


def pollUntil(session, predicate, seconds: float = 120.0):
    """Poll until ``predicate(progress, events so far)``; returns the progress that met it and the events."""
    deadline, events = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        progress = session.poll()
        events += progress.events
        if predicate(progress, events):
            return progress, events
        assert progress.state == "running", f"the job ended ({progress.state}: {progress.message}) before it was seen"
        time.sleep(0.05)
    raise AssertionError("not seen in time")


def openGate(session) -> None:
    """Let the fake engine go on from the preview it waits at (gated, it waits at each one: no poll can miss one)."""
    Path(session.client.runDir, "go").write_text("")


def fileLabels(folder) -> np.ndarray:
    """The labels file of a result folder (predictions or a preview), as the engine wrote it."""
    import SimpleITK as sitk

    from SemiSegSlicerLib import resultimport

    return sitk.GetArrayFromImage(sitk.ReadImage(resultimport.predictionFile(str(folder), "labels")))


def cancelShowsTheLastResultsAgain(session, cancelled: str, kept: str, seconds: float = 120.0):
    """Cancel the running job and poll until it ends: cancelled, the last results restored, the message starting
    with ``cancelled`` then "The last results are shown again" and naming the previews ``kept``. Returns the last
    progress."""
    session.cancel(graceSeconds=2.0)
    progress, _ = pollUntil(session, lambda p, e: p.state != "running", seconds)
    assert progress.state == "cancelled" and progress.restored
    assert progress.message.startswith(f"{cancelled} The last results are shown again")
    assert kept in progress.message
    return progress
