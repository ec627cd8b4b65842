"""Run folder -> scene: pseudo-labels, confidence overlay and review list.

The pseudo-labels go into a NEW segmentation node with the segment IDs, names and colours of the
user's segmentation and the volume as reference geometry; the user's own segmentation is never
touched. The confidence map (max softmax probability) becomes a scalar volume shown as the
foreground layer of every slice view, with a perceptual colour table (Viridis) at 40 % opacity.
A preview written while training runs is imported the same way, marked preliminary; the next
preview and then the final result update its nodes in place.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import slicer
import vtk

from .jobexport import ExportedJob
from .mrmlio import arrayFromVolume, ijkToRasMatrix, readVolume, removeNode, writeSegmentArrays
from .review import ReviewModel

__all__ = [
    "PERCEPTUAL_COLOR_TABLES",
    "DEFAULT_OPACITY",
    "ImportedResult",
    "predictionFile",
    "importPseudoLabels",
    "importConfidence",
    "perceptualColorNode",
    "showConfidence",
    "hideConfidence",
    "setConfidenceOpacity",
    "importResults",
    "previewText",
    "PREVIEW_ATTRIBUTE",
]

DEFAULT_OPACITY = 0.4
PREVIEW_ATTRIBUTE = "SemiSegSlicer.PreviewIteration"  # on the nodes of a preview: its training iteration
_EXTENSIONS = ("nrrd", "nii.gz", "mha", "nii")
# Nine evenly spaced stops of matplotlib's perceptually uniform maps (van der Walt & Smith, 2015),
# interpolated linearly to 256 entries when a scene has no such table (Slicer ships both).
PERCEPTUAL_COLOR_TABLES = {
    "Viridis": ("440154", "472d7b", "3b528b", "2c728e", "21918c", "28ae80", "5ec962", "addc30", "fde725"),
    "Inferno": ("000004", "210c4a", "57106e", "8a226a", "bc3754", "e45a31", "f98e09", "f9cb35", "fcffa4"),
}


@dataclasses.dataclass
class ImportedResult:
    segmentationNode: object
    confidenceNode: object | None
    review: dict | None
    predictionDir: str
    iteration: int | None = None  # the training iteration of a preview; None for the final result

    @property
    def preliminary(self) -> bool:
        """A preview written while training runs, which the final result replaces."""
        return self.iteration is not None


def predictionFile(predictionDir: str, stem: str) -> str:
    """``predictionDir/stem.<ext>`` for the first output format found; ``FileNotFoundError`` if none."""
    for ext in _EXTENSIONS:
        path = os.path.join(predictionDir, f"{stem}.{ext}")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{predictionDir}: no {stem}.<{'|'.join(_EXTENSIONS)}> written by the engine")


def _checkSameGrid(node, volumeNode, what: str) -> None:
    dims = node.GetImageData().GetDimensions()
    expected = volumeNode.GetImageData().GetDimensions()
    if dims != expected or not np.allclose(ijkToRasMatrix(node), ijkToRasMatrix(volumeNode), atol=1e-3):
        raise ValueError(f"the {what} ({dims}) is not on the grid of volume {volumeNode.GetName()!r} ({expected})")


def importPseudoLabels(scene, labelsPath: str, volumeNode, segments: list[dict], name: str):
    """A new segmentation node holding the label map at ``labelsPath``.

    Args:
        segments: ``[{"id", "name", "color"}]``; label ``n + 1`` goes to ``segments[n]``.
        name: the new node's name.
    """
    labelmapNode = readVolume(scene, labelsPath, "SemiSegSlicerTemporaryPseudoLabels", "vtkMRMLLabelMapVolumeNode")
    segmentationNode = None
    try:
        labelmapNode.SetHideFromEditors(True)
        _checkSameGrid(labelmapNode, volumeNode, f"label map {labelsPath}")
        scalars = labelmapNode.GetImageData().GetPointData().GetScalars()
        highest = int(scalars.GetRange()[1]) if scalars.GetNumberOfTuples() else 0
        if highest > len(segments):
            raise ValueError(f"{labelsPath} holds label {highest} but only {len(segments)} segments were trained")
        segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        ids = vtk.vtkStringArray()
        for segment in segments:
            segmentationNode.GetSegmentation().AddEmptySegment(segment["id"], segment["name"], segment["color"])
            ids.InsertNextValue(segment["id"])
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmapNode, segmentationNode, ids
        ):
            raise RuntimeError(f"{labelsPath} could not be imported into a segmentation")
        displayNode = segmentationNode.GetDisplayNode()
        if displayNode is not None:
            displayNode.SetOpacity2DFill(0.3)  # lighter than the user's own labels
        return segmentationNode
    except Exception:
        removeNode(scene, segmentationNode)
        raise
    finally:
        removeNode(scene, labelmapNode)


def perceptualColorNode(scene, name: str = "Viridis"):
    """The ``Viridis`` (or ``Inferno``) colour table: Slicer's own (the one its colour logic loads from
    ``ColorFiles/Viridis.txt``, ID ``vtkMRMLColorTableNodeFileViridis.txt``), else a table of that name in the
    scene, else one made here from :data:`PERCEPTUAL_COLOR_TABLES` (the ``slicer-core`` wheel has no colour files).
    """
    if name not in PERCEPTUAL_COLOR_TABLES:
        raise ValueError(f"unknown colour table {name!r}; choose one of {sorted(PERCEPTUAL_COLOR_TABLES)}")
    slicerTable = scene.GetNodeByID(f"vtkMRMLColorTableNodeFile{name}.txt")
    if slicerTable is not None:
        return slicerTable
    nodes = scene.GetNodesByClassByName("vtkMRMLColorNode", name)
    if nodes.GetNumberOfItems():
        return nodes.GetItemAsObject(0)
    stops = np.array([[int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] for h in PERCEPTUAL_COLOR_TABLES[name]])
    positions = np.linspace(0.0, 1.0, len(stops))
    colorNode = slicer.vtkMRMLColorTableNode()
    colorNode.SetName(name)
    colorNode.SetTypeToUser()
    colorNode.SetNumberOfColors(256)
    for index, t in enumerate(np.linspace(0.0, 1.0, 256)):
        rgb = [float(np.interp(t, positions, stops[:, c])) for c in range(3)]
        colorNode.SetColor(index, f"{name}{index}", rgb[0], rgb[1], rgb[2], 1.0)
    colorNode.SetAttribute("Category", "Continuous")
    scene.AddNode(colorNode)
    return colorNode


def importConfidence(
    scene, confidencePath: str, volumeNode, name: str, numberOfClasses: int = 2, colorTable: str = "Viridis"
):
    """A scalar volume node of the confidence map, coloured from ``1/C`` (dark) to 1 (bright)."""
    node = readVolume(scene, confidencePath, name)
    try:
        _checkSameGrid(node, volumeNode, f"confidence map {confidencePath}")
    except ValueError:
        removeNode(scene, node)
        raise
    node.CreateDefaultDisplayNodes()
    displayNode = node.GetDisplayNode()
    displayNode.SetAndObserveColorNodeID(perceptualColorNode(scene, colorTable).GetID())
    displayNode.SetAutoWindowLevel(False)
    displayNode.SetWindowLevelMinMax(1.0 / max(2, numberOfClasses), 1.0)
    return node


def _compositeNodes(scene):
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def showConfidence(scene, confidenceNode, backgroundVolumeNode=None, opacity: float = DEFAULT_OPACITY) -> None:
    """Show the confidence map as the foreground layer of every slice view."""
    for composite in _compositeNodes(scene):
        if backgroundVolumeNode is not None and not composite.GetBackgroundVolumeID():
            composite.SetBackgroundVolumeID(backgroundVolumeNode.GetID())
        composite.SetForegroundVolumeID(confidenceNode.GetID())
        composite.SetForegroundOpacity(float(opacity))


def hideConfidence(scene, confidenceNode) -> None:
    """Remove the confidence map from the slice views that show it."""
    for composite in _compositeNodes(scene):
        if confidenceNode is not None and composite.GetForegroundVolumeID() == confidenceNode.GetID():
            composite.SetForegroundVolumeID(None)


def setConfidenceOpacity(scene, confidenceNode, opacity: float) -> None:
    """Set the foreground opacity of the slice views that show the confidence map."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    for composite in _compositeNodes(scene):
        if confidenceNode is not None and composite.GetForegroundVolumeID() == confidenceNode.GetID():
            composite.SetForegroundOpacity(float(opacity))


def previewText(iteration) -> str:
    """How a preview is marked wherever it is shown: ``preview at iteration 120 — preliminary``."""
    return f"preview at iteration {iteration} — preliminary"


def _resultName(baseName: str, iteration: int | None) -> str:
    return baseName if iteration is None else f"{baseName} ({previewText(iteration)})"


def _readReview(predictionDir: str) -> dict | None:
    """``review.json`` of a prediction, checked to be a review list (None when there is none)."""
    reviewPath = os.path.join(predictionDir, "review.json")
    if not os.path.isfile(reviewPath):
        return None
    with open(reviewPath, encoding="utf-8") as f:
        review = json.load(f)
    ReviewModel(review)  # ValueError on a malformed list, before any node changes
    return review


def _readLabels(scene, labelsPath: str, volumeNode, numberOfSegments: int) -> np.ndarray:
    """The label map at ``labelsPath`` as a (K, J, I) array, checked against the volume's grid and the segments."""
    node = readVolume(scene, labelsPath, "SemiSegSlicerTemporaryPseudoLabels", "vtkMRMLLabelMapVolumeNode")
    try:
        node.SetHideFromEditors(True)
        _checkSameGrid(node, volumeNode, f"label map {labelsPath}")
        labels = arrayFromVolume(node)
    finally:
        removeNode(scene, node)
    if labels.size and int(labels.max()) > numberOfSegments:
        raise ValueError(
            f"{labelsPath} holds label {int(labels.max())} but only {numberOfSegments} segments were trained"
        )
    return labels


def _readConfidenceImage(scene, confidencePath: str, volumeNode):
    """The confidence map's ``vtkImageData``, checked against the volume's grid (no node is left in the scene)."""
    node = readVolume(scene, confidencePath, "SemiSegSlicerTemporaryConfidence")
    try:
        node.SetHideFromEditors(True)
        _checkSameGrid(node, volumeNode, f"confidence map {confidencePath}")
        return node.GetImageData()
    finally:
        removeNode(scene, node)


def _intact(scene, result: ImportedResult | None, segmentIds: list[str]) -> bool:
    """The result's nodes are still in the scene with every trained segment (so they can be updated in place)."""
    if result is None:
        return False
    nodes = (result.segmentationNode, result.confidenceNode)
    if any(node is None or node.GetScene() is not scene for node in nodes):
        return False
    segmentation = result.segmentationNode.GetSegmentation()
    return all(segmentation.GetSegment(sid) is not None for sid in segmentIds)


def _markPreliminary(node, baseName: str, iteration: int | None) -> None:
    node.SetName(_resultName(baseName, iteration))
    if iteration is None:
        node.RemoveAttribute(PREVIEW_ATTRIBUTE)
    else:
        node.SetAttribute(PREVIEW_ATTRIBUTE, str(iteration))


def importResults(
    scene,
    exported: ExportedJob,
    name: str = "image",
    showOverlay: bool = True,
    opacity: float = DEFAULT_OPACITY,
    folder: str = "predictions",
    iteration: int | None = None,
    into: ImportedResult | None = None,
) -> ImportedResult:
    """Import the predictions of ``exported``'s run for the input called ``name`` ("image": the job's volume).

    Args:
        folder: ``"predictions"`` (the final result) or ``"preview"`` (what the engine writes while it trains,
            docs/JOB_FORMAT.md); the files are the same.
        iteration: the training iteration of a preview: the result is marked preliminary (its nodes' names say
            :func:`previewText`, attribute :data:`PREVIEW_ATTRIBUTE`). None for the final result.
        into: a result whose nodes are updated in place (the previous preview of the same run, which the next
            preview or the final result replaces), when they are still in the scene with every segment;
            otherwise new nodes are made. ``showOverlay`` applies to new nodes only: an update keeps the display.

    Every file is read and checked before a node is made or changed, so an unreadable or half-written
    prediction raises and leaves the scene as it was.
    """
    volumeNode = scene.GetNodeByID(exported.volumeNodeId if name == "image" else exported.unlabeled[name])
    if volumeNode is None:
        raise ValueError("the volume that was trained on is no longer in the scene")
    predictionDir = os.path.join(exported.runDir, folder, name)
    userSegmentation = scene.GetNodeByID(exported.segmentationNodeId)
    baseName = userSegmentation.GetName() if userSegmentation is not None else volumeNode.GetName()
    labelsPath, confidencePath = predictionFile(predictionDir, "labels"), predictionFile(predictionDir, "confidence")
    review = _readReview(predictionDir)
    if not _intact(scene, into, exported.segmentIds):
        segmentationNode = importPseudoLabels(
            scene, labelsPath, volumeNode, exported.segments, f"{baseName} pseudo-labels"
        )
        try:
            confidenceNode = importConfidence(
                scene, confidencePath, volumeNode, f"{volumeNode.GetName()} confidence", len(exported.classes)
            )
        except Exception:
            removeNode(scene, segmentationNode)
            raise
        if showOverlay:
            showConfidence(scene, confidenceNode, volumeNode, opacity)
    else:
        labels = _readLabels(scene, labelsPath, volumeNode, len(exported.segments))
        confidence = _readConfidenceImage(scene, confidencePath, volumeNode)
        segmentationNode, confidenceNode = into.segmentationNode, into.confidenceNode
        writeSegmentArrays(
            segmentationNode, {sid: labels == n + 1 for n, sid in enumerate(exported.segmentIds)}, volumeNode
        )
        confidenceNode.SetAndObserveImageData(confidence)
    _markPreliminary(segmentationNode, f"{baseName} pseudo-labels", iteration)
    _markPreliminary(confidenceNode, f"{volumeNode.GetName()} confidence", iteration)
    return ImportedResult(segmentationNode, confidenceNode, review, predictionDir, iteration)
