"""Which slices count as labelled, on a segmentation node.

A slice counts as labelled when it holds any label voxel or when the user marked it "checked"
(looked at it and found nothing to label, or accepted it as it is). Every other slice is
unlabelled: an unpainted slice is not background (docs/JOB_FORMAT.md). The rule, and the choice of
the axis when nothing is checked, are the engine's (``semiseg.contract.labeled_slices`` and
``choose_axis``), so what a front end shows is what the engine will train on.

The checked slices are kept on the segmentation node as the attribute :data:`ATTRIBUTE`
(JSON ``{"axis": 2, "slices": [3, 7]}``), so they are saved with the scene and travel with the
labels they belong to. Axes are IJK axes (0 = I, 1 = J, 2 = K).
"""

from __future__ import annotations

import json

import numpy as np

from semiseg.contract import choose_axis, labeled_slices

from .mrmlio import ijkToRasMatrix, numpyAxis, segmentsToArray

__all__ = [
    "ATTRIBUTE",
    "labeledSlicesSummary",
    "labeledSlicesText",
    "checkedSlices",
    "setCheckedSlices",
    "markChecked",
    "viewAxisAndIndex",
    "labeledSlicesOfSegmentation",
]

ATTRIBUTE = "SemiSegSlicer.CheckedSlices"


def checkedSlices(segmentationNode) -> tuple[int | None, list[int]]:
    """``(axis, slices)`` the user marked as checked on this segmentation (``(None, [])`` if none)."""
    text = segmentationNode.GetAttribute(ATTRIBUTE) if segmentationNode else None
    if not text:
        return None, []
    try:
        value = json.loads(text)
        axis = value.get("axis")
        slices = sorted({int(i) for i in value.get("slices", [])})
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"segmentation {segmentationNode.GetName()!r} has an unreadable {ATTRIBUTE} "
                         f"attribute {text!r}: {err}") from None
    if slices and axis not in (0, 1, 2):
        raise ValueError(f"segmentation {segmentationNode.GetName()!r}: checked slices have no valid axis ({axis!r})")
    return (axis if slices else None), slices


def setCheckedSlices(segmentationNode, axis: int | None, slices) -> None:
    """Store the checked slices (an empty list removes the attribute)."""
    slices = sorted({int(i) for i in slices})
    if not slices:
        segmentationNode.RemoveAttribute(ATTRIBUTE)
        return
    numpyAxis(axis)  # validates
    segmentationNode.SetAttribute(ATTRIBUTE, json.dumps({"axis": int(axis), "slices": slices}))


def markChecked(segmentationNode, axis: int, index: int, checked: bool = True) -> list[int]:
    """Mark (or unmark) one slice as checked; all checked slices must lie along one axis.

    Returns:
        the checked slices after the change.

    Raises:
        ValueError: ``axis`` differs from the axis of the slices already checked.
    """
    currentAxis, slices = checkedSlices(segmentationNode)
    if slices and currentAxis != axis:
        raise ValueError(f"the checked slices lie along axis {currentAxis}; slice {index} is along axis {axis}. "
                         "Check slices in one view orientation, or clear the checked slices first.")
    updated = set(slices) | {int(index)} if checked else set(slices) - {int(index)}
    setCheckedSlices(segmentationNode, axis, updated)
    return sorted(updated)


def viewAxisAndIndex(volumeNode, sliceNode, tolerance: float = 1e-3) -> tuple[int, int] | None:
    """The IJK axis that a slice view cuts across and the index of the slice it shows.

    Returns:
        ``(axis, index)``, or ``None`` when the view is oblique to the volume's grid or outside it.
    """
    sliceToRas = sliceNode.GetSliceToRAS()
    normal = np.array([sliceToRas.GetElement(r, 2) for r in range(3)])
    center = np.array([sliceToRas.GetElement(r, 3) for r in range(3)] + [1.0])
    rasToIjk = np.linalg.inv(ijkToRasMatrix(volumeNode))
    direction = rasToIjk[:3, :3] @ normal
    direction = direction / np.linalg.norm(direction)
    axis = int(np.argmax(np.abs(direction)))
    if abs(abs(direction[axis]) - 1.0) > tolerance:
        return None
    index = int(np.floor((rasToIjk @ center)[axis] + 0.5))
    size = volumeNode.GetImageData().GetDimensions()[axis]
    if not 0 <= index < size:
        return None
    return axis, index


def labeledSlicesOfSegmentation(segmentationNode, volumeNode) -> tuple[int, list[int]]:
    """``(axis, slices)``: the slices of a segmentation that count as labelled, on ``volumeNode``'s grid.

    The axis is the one of the checked slices if any, else the one the painted slices lie along
    (the engine's ``choose_axis``, with the volume's spacing); the slices are the painted ones plus the checked
    ones. What a front end shows
    under "labelled slices" and what :func:`~.jobexport.exportJob` will write agree.
    """
    segmentation = segmentationNode.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    dims = volumeNode.GetImageData().GetDimensions()
    labels = segmentsToArray(segmentationNode, ids, volumeNode) if ids else np.zeros(dims[::-1], np.uint8)
    axis, checked = checkedSlices(segmentationNode)
    axis = choose_axis(labels, volumeNode.GetSpacing()[::-1]) if axis is None else axis
    return axis, labeled_slices(labels, axis, checked)


def labeledSlicesText(axis: int, slices) -> str:
    """``Labelled slices along K: 2, 4``: what a front end shows under "labelled slices"."""
    return f"Labelled slices along {'IJK'[axis]}: {', '.join(map(str, slices))}"


def labeledSlicesSummary(segmentationNode, volumeNode) -> str:
    """:func:`labeledSlicesText` of :func:`labeledSlicesOfSegmentation`."""
    return labeledSlicesText(*labeledSlicesOfSegmentation(segmentationNode, volumeNode))
