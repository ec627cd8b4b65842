"""MRML volumes and segments as numpy arrays on a volume's grid, and volume files in and out.

Qt-free: uses only MRML classes, VTK and numpy, so it runs inside Slicer and on the ``slicer-core``
wheel alike. Arrays are in numpy order (K, J, I); an IJK ``axis`` (0 = I, 1 = J, 2 = K, the
SimpleITK and Slicer order used by the job folder) is numpy axis ``2 - axis``.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

__all__ = [
    "ijkToRasMatrix",
    "arrayFromVolume",
    "orientedImageFromArray",
    "segmentsToArray",
    "writeSegmentArrays",
    "writeVolume",
    "writeArrayAsVolume",
    "readVolume",
    "checkSameTransform",
    "numpyAxis",
    "removeNode",
    "firstScalarVolume",
    "vtkMessagesOff",
]


@contextlib.contextmanager
def vtkMessagesOff():
    """VTK's (and MRML's) warning and error messages off for the block, for failures that are expected and
    handled (a reader catching a file being replaced); the previous setting is restored."""
    shown = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(shown)


def numpyAxis(axis: int) -> int:
    """The numpy axis of IJK ``axis`` in a (K, J, I) array."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (I, J, K), got {axis!r}")
    return 2 - axis


def ijkToRasMatrix(volumeNode) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of ``volumeNode`` (spacing, origin and direction)."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _vtkMatrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def arrayFromVolume(volumeNode) -> np.ndarray:
    """A copy of the voxels of a scalar volume node as a (K, J, I) array."""
    imageData = volumeNode.GetImageData() if volumeNode else None
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        raise ValueError(f"volume {volumeNode.GetName() if volumeNode else None!r} holds no image data")
    if imageData.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"volume {volumeNode.GetName()!r} has {imageData.GetNumberOfScalarComponents()} components; "
                         "a grey-level volume is needed")
    i, j, k = imageData.GetDimensions()
    return numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(k, j, i).copy()


def orientedImageFromArray(array: np.ndarray, ijkToRas: np.ndarray):
    """A ``vtkOrientedImageData`` (unsigned char) holding ``array`` (K, J, I) with geometry ``ijkToRas``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image.GetPointData().GetScalars().DeepCopy(numpy_support.numpy_to_vtk(array.ravel(), deep=1))
    image.SetImageToWorldMatrix(_vtkMatrix(ijkToRas))
    return image


def _hiddenNode(scene, className: str, name: str):
    node = scene.CreateNodeByClass(className)
    node.UnRegister(None)  # CreateNodeByClass hands over a reference; the scene keeps its own
    node.SetName(name)
    node.SetHideFromEditors(True)
    node.SetSaveWithScene(False)
    scene.AddNode(node)
    return node


def removeNode(scene, node) -> None:
    """Remove ``node`` with the display and storage nodes it created (``scene.RemoveNode`` leaves them)."""
    if node is None or scene is None:
        return
    dependents = []
    if hasattr(node, "GetNumberOfDisplayNodes"):
        dependents += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if hasattr(node, "GetStorageNode"):
        dependents.append(node.GetStorageNode())
    scene.RemoveNode(node)
    for dependent in dependents:
        if dependent is not None and dependent.GetScene() is scene:
            scene.RemoveNode(dependent)


def _nodeIds(scene, className: str) -> set[str]:
    nodes = scene.GetNodesByClass(className)
    return {nodes.GetItemAsObject(i).GetID() for i in range(nodes.GetNumberOfItems())}


def segmentsToArray(segmentationNode, segmentIds: list[str], referenceVolumeNode) -> np.ndarray:
    """The segments as one (K, J, I) uint8 label array on the reference volume's grid.

    Segment ``segmentIds[n]`` gets value ``n + 1``; where segments overlap the later one wins.
    The segmentation is only read. A temporary hidden label map node is removed before returning.
    """
    if len(segmentIds) > 255:
        raise ValueError(f"at most 255 segments can be exported, got {len(segmentIds)}")
    scene = segmentationNode.GetScene()
    labelmapNode = _hiddenNode(scene, "vtkMRMLLabelMapVolumeNode", "SemiSegSlicerTemporaryLabels")
    colorNodesBefore = _nodeIds(scene, "vtkMRMLColorNode")
    try:
        ids = vtk.vtkStringArray()
        for segmentId in segmentIds:
            if segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
                raise ValueError(f"segment {segmentId!r} is not in segmentation {segmentationNode.GetName()!r}")
            ids.InsertNextValue(segmentId)
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.ExportSegmentsToLabelmapNode(segmentationNode, ids, labelmapNode, referenceVolumeNode,
                                                  slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
            raise RuntimeError(f"segmentation {segmentationNode.GetName()!r} could not be exported to a label map")
        dims = referenceVolumeNode.GetImageData().GetDimensions()
        if labelmapNode.GetImageData() is None or labelmapNode.GetImageData().GetDimensions() != dims:
            raise RuntimeError("exported label map is not on the reference volume's grid")
        labels = numpy_support.vtk_to_numpy(labelmapNode.GetImageData().GetPointData().GetScalars())
        return labels.reshape(dims[2], dims[1], dims[0]).astype(np.uint8)
    finally:
        displayNode = labelmapNode.GetDisplayNode()
        colorNodeId = displayNode.GetColorNodeID() if displayNode is not None else None
        removeNode(scene, labelmapNode)
        if colorNodeId and colorNodeId not in colorNodesBefore:  # the colour table the export made
            scene.RemoveNode(scene.GetNodeByID(colorNodeId))


def writeSegmentArrays(segmentationNode, masks: dict[str, np.ndarray], referenceVolumeNode) -> None:
    """Replace the binary labelmap of each segment ID in ``masks`` by its (K, J, I) mask.

    Callers that change only some voxels pass the current mask with those voxels changed; the
    other voxels are written back unchanged. Segments are first written with every voxel that any
    of them loses cleared and then with their final masks, so that no transient overlap splits a
    shared labelmap layer.
    """
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    ijkToRas = ijkToRasMatrix(referenceVolumeNode)
    current = {sid: segmentsToArray(segmentationNode, [sid], referenceVolumeNode) > 0 for sid in masks}
    with _modifying(segmentationNode):
        for sid, mask in masks.items():
            cleared = current[sid] & (np.asarray(mask) > 0)
            if not logic.SetBinaryLabelmapToSegment(orientedImageFromArray(cleared, ijkToRas), segmentationNode,
                                                    sid, logic.MODE_REPLACE):
                raise RuntimeError(f"segment {sid!r} could not be written")
        for sid, mask in masks.items():
            if not logic.SetBinaryLabelmapToSegment(orientedImageFromArray(np.asarray(mask) > 0, ijkToRas),
                                                    segmentationNode, sid, logic.MODE_REPLACE):
                raise RuntimeError(f"segment {sid!r} could not be written")


class _modifying:
    """Batch the node's Modified events (``StartModify``/``EndModify``)."""

    def __init__(self, node):
        self.node = node

    def __enter__(self):
        self.wasModifying = self.node.StartModify()

    def __exit__(self, *exc):
        self.node.EndModify(self.wasModifying)
        return False


def checkSameTransform(volumeNode, segmentationNode) -> None:
    """Refuse a segmentation that lies under a different transform than its volume."""
    volumeTransform = volumeNode.GetTransformNodeID()
    segmentationTransform = segmentationNode.GetTransformNodeID()
    if volumeTransform != segmentationTransform:
        raise ValueError(
            f"volume {volumeNode.GetName()!r} and segmentation {segmentationNode.GetName()!r} are under different "
            "transforms; harden the transforms (Data module) first")


def writeVolume(volumeNode, path: str | os.PathLike) -> str:
    """Write a volume node to ``path`` (NRRD, NIfTI, MHA...) without changing the node's storage.

    Returns:
        the path written, as a string.
    """
    path = os.fspath(path)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(path)
    storage.SetUseCompression(True)
    if not storage.WriteData(volumeNode):
        raise OSError(f"could not write volume {volumeNode.GetName()!r} to {path}")
    return path


def writeArrayAsVolume(array: np.ndarray, referenceVolumeNode, path: str | os.PathLike, labelmap: bool = True) -> str:
    """Write a (K, J, I) array on the grid of ``referenceVolumeNode`` to ``path``.

    A temporary hidden node carries the array and the reference geometry; it is removed afterwards.
    """
    reference = referenceVolumeNode.GetImageData()
    if reference is None or tuple(reference.GetDimensions()) != tuple(array.shape[::-1]):
        raise ValueError(f"array of shape {array.shape} is not on the grid of volume {referenceVolumeNode.GetName()!r}")
    scene = referenceVolumeNode.GetScene()
    className = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = _hiddenNode(scene, className, "SemiSegSlicerTemporaryVolume")
    try:
        imageData = vtk.vtkImageData()
        imageData.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        vtkArray = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=1)
        imageData.AllocateScalars(vtkArray.GetDataType(), 1)
        imageData.GetPointData().GetScalars().DeepCopy(vtkArray)
        node.SetAndObserveImageData(imageData)
        node.SetIJKToRASMatrix(_vtkMatrix(ijkToRasMatrix(referenceVolumeNode)))
        return writeVolume(node, path)
    finally:
        removeNode(scene, node)


def readVolume(scene, path: str | os.PathLike, name: str, className: str = "vtkMRMLScalarVolumeNode"):
    """Read a volume file into a new node of ``className`` added to ``scene``.

    Raises:
        OSError: the file is missing or cannot be read; no node is left in the scene then.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OSError(f"{path}: file not found")
    node = scene.AddNewNodeByClass(className, name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(path)
    storage.SetCenterImage(False)
    storage.SetSingleFile(True)  # never gather numbered neighbours of the file into a series
    if not storage.ReadData(node) or node.GetImageData() is None:
        removeNode(scene, node)
        raise OSError(f"{path}: cannot be read as a volume")
    return node


def firstScalarVolume(scene):
    """The first scalar volume a volume selector offers: not a label map, not hidden from editors.

    ``scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")`` may return a ``vtkMRMLLabelMapVolumeNode``
    (a subclass), which a selector of scalar volumes without child types does not show. None when
    there is no such volume.
    """
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetHideFromEditors():
            return node
    return None
