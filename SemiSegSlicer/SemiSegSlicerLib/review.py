"""Review of the pseudo-labels, slice by slice, from the least confident up.

:class:`ReviewModel` holds the engine's ``review.json`` (slices in the engine's order: where a correction is
expected to add the most Dice first, or, in a list without gains, from the least confident)
and the current position; :func:`sliceCenterRas` and :func:`jumpSlices` bring the slice views to a
slice; :func:`acceptSlice` copies exactly one slice of the (possibly corrected) pseudo-labels into the
user's segmentation and marks it checked, returning what :func:`undoAccept` needs to restore it.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from . import labeledslices
from .mrmlio import checkSameTransform, ijkToRasMatrix, numpyAxis, segmentsToArray, writeSegmentArrays

__all__ = ["ReviewModel", "StudyReview", "reviewRowTexts", "sliceCenterRas", "jumpSlices", "AcceptRecord",
           "acceptSlice", "undoAccept"]


class _Rows:
    """Stepping through a list of review entries (``slices``) with one current row; ``next`` and
    ``previous`` wrap around."""

    slices: list[dict]
    current: int

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def currentSlice(self) -> dict | None:
        return self.slices[self.current] if 0 <= self.current < len(self.slices) else None

    def select(self, row: int) -> dict:
        """Make ``row`` (0 = least confident) current and return its entry."""
        if not 0 <= row < len(self.slices):
            raise IndexError(f"review row {row} is outside 0..{len(self.slices) - 1}")
        self.current = row
        return self.slices[row]

    def next(self) -> dict | None:
        """Move to the next slice (wraps to the first); None when the list is empty."""
        return self.select((self.current + 1) % len(self.slices)) if self.slices else None

    def previous(self) -> dict | None:
        return self.select((self.current - 1) % len(self.slices)) if self.slices else None


class ReviewModel(_Rows):
    """The ordered review list and the current position in it."""

    def __init__(self, review: dict):
        try:
            self.axis = int(review["axis"])
            self.slices = [dict(entry) for entry in review["slices"]]
            for entry in self.slices:
                entry["index"] = int(entry["index"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"review list is malformed ({err!r})") from None
        numpyAxis(self.axis)
        self.statistic = review.get("statistic", "")
        self.current = 0 if self.slices else -1

    @classmethod
    def fromFile(cls, path: str | os.PathLike) -> ReviewModel:
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    def rowOfSlice(self, index: int) -> int:
        for row, entry in enumerate(self.slices):
            if entry["index"] == index:
                return row
        raise KeyError(f"slice {index} is not in the review list")

    def setLabeled(self, index: int, labeled: bool = True) -> None:
        self.slices[self.rowOfSlice(index)]["labeled"] = labeled


class StudyReview(_Rows):
    """One review list across the volumes of a study, where a correction is expected to add the most Dice first.

    Built from each volume's ``review.json`` (in volume order); each entry is the engine's slice entry with
    ``volume`` (the volume's name) and ``axis`` added. Entries are sorted by the engine's ``gain`` (the Dice a
    correction of the slice is expected to add to its volume; a study's Dice is its volumes' mean, so the gains
    of different volumes compare), from the highest; entries without one (a list of an engine before gains)
    follow, from the least confident. Ties go by volume order, then slice index. Steps as :class:`ReviewModel`
    does.
    """

    def __init__(self, reviews: list[tuple[str, dict]]):
        self.volumes: list[str] = []
        self.slices: list[dict] = []
        self.statistic = ""
        for order, (name, review) in enumerate(reviews):
            self._add(order, name, review)
        self._sort()
        self.current = 0 if self.slices else -1

    def _add(self, order: int, name: str, review: dict) -> None:
        model = ReviewModel(review)  # checks it
        if name in self.volumes:
            raise ValueError(f"volume {name!r} is already in the review list")
        self.volumes.append(name)
        self.statistic = self.statistic or model.statistic
        for entry in model.slices:
            self.slices.append(dict(entry, volume=name, axis=model.axis, _order=order))

    def _sort(self) -> None:
        def key(entry):
            gain, confidence = entry.get("gain"), entry.get("confidence")
            if isinstance(gain, (int, float)):
                return 0, -float(gain), entry["_order"], entry["index"]
            confidence = float(confidence) if isinstance(confidence, (int, float)) else float("inf")
            return 1, confidence, entry["_order"], entry["index"]

        self.slices.sort(key=key)

    def addVolume(self, name: str, review: dict) -> None:
        """Add a volume's slices (a volume segmented later); the current entry stays current."""
        current = self.currentSlice
        self._add(len(self.volumes), name, review)
        self._sort()
        self.current = self.slices.index(current) if current is not None else 0

    def rowOfSlice(self, volume: str, index: int) -> int:
        for row, entry in enumerate(self.slices):
            if entry["volume"] == volume and entry["index"] == index:
                return row
        raise KeyError(f"slice {index} of volume {volume!r} is not in the review list")

    def setLabeled(self, volume: str, index: int, labeled: bool = True) -> None:
        self.slices[self.rowOfSlice(volume, index)]["labeled"] = labeled


def reviewRowTexts(entry: dict, yes: str = "yes") -> tuple[str, str, str, str, str]:
    """The review table's cells of an entry: the slice (``<volume>: <index>`` in a study), the gain in Dice points
    (empty in a list without gains), the confidence, the foreground and ``yes`` when the slice is labelled."""
    index = f"{entry['volume']}: {entry['index']}" if "volume" in entry else str(entry["index"])
    gain = entry.get("gain")
    return (index, f"{100 * gain:.2f}" if isinstance(gain, (int, float)) else "",
            f"{entry.get('confidence', float('nan')):.3f}", f"{100 * entry.get('foreground_fraction', 0.0):.1f} %",
            yes if entry.get("labeled") else "")


def sliceCenterRas(volumeNode, axis: int, index: int) -> tuple[float, float, float]:
    """RAS position of the centre of slice ``index`` along IJK ``axis`` of ``volumeNode``."""
    dims = volumeNode.GetImageData().GetDimensions()
    if not 0 <= index < dims[axis]:
        raise IndexError(f"slice {index} is outside 0..{dims[axis] - 1} along axis {axis}")
    ijk = [(d - 1) / 2.0 for d in dims] + [1.0]
    ijk[axis] = float(index)
    ras = ijkToRasMatrix(volumeNode) @ np.array(ijk)
    return float(ras[0]), float(ras[1]), float(ras[2])


def jumpSlices(scene, ras) -> None:
    """Move every slice view along its normal so that it passes through ``ras``."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    for i in range(nodes.GetNumberOfItems()):
        nodes.GetItemAsObject(i).JumpSliceByOffsetting(*ras)


@dataclasses.dataclass
class AcceptRecord:
    """What :func:`undoAccept` needs: the slice's previous content and the previous checked slices."""

    segmentationNodeId: str
    segmentIds: list[str]
    axis: int
    index: int
    previousSlices: dict  # segment ID -> 2D bool array
    previousChecked: tuple  # (axis, slices)


def _slab(axis: int, index: int) -> tuple:
    where = [slice(None)] * 3
    where[numpyAxis(axis)] = index
    return tuple(where)


def acceptSlice(userSegmentation, pseudoSegmentation, volumeNode, segmentIds: list[str], axis: int,
                index: int) -> AcceptRecord:
    """Copy slice ``index`` along ``axis`` of the pseudo-labels into the user's segmentation.

    Only that slice of the segments ``segmentIds`` changes; a segment missing from the pseudo-label
    node counts as empty there. The slice is then marked checked, so it counts as labelled even
    when it is empty.
    """
    for node in (userSegmentation, pseudoSegmentation):
        checkSameTransform(volumeNode, node)
    missing = [sid for sid in segmentIds if userSegmentation.GetSegmentation().GetSegment(sid) is None]
    if missing:
        raise ValueError(f"segments {missing} are no longer in segmentation {userSegmentation.GetName()!r}")
    checkedAxis, checked = labeledslices.checkedSlices(userSegmentation)
    if checked and checkedAxis != axis:
        raise ValueError(f"the checked slices lie along axis {checkedAxis} but the review is along axis {axis}")
    where = _slab(axis, index)
    present = [sid for sid in segmentIds if pseudoSegmentation.GetSegmentation().GetSegment(sid) is not None]
    pseudo = segmentsToArray(pseudoSegmentation, present, volumeNode) if present else None
    masks, previous = {}, {}
    for sid in segmentIds:
        mask = segmentsToArray(userSegmentation, [sid], volumeNode) > 0
        previous[sid] = mask[where].copy()
        mask[where] = (pseudo[where] == present.index(sid) + 1) if sid in present else False
        masks[sid] = mask
    writeSegmentArrays(userSegmentation, masks, volumeNode)
    labeledslices.markChecked(userSegmentation, axis, index)
    return AcceptRecord(userSegmentation.GetID(), list(segmentIds), axis, index, previous, (checkedAxis, checked))


def undoAccept(record: AcceptRecord, userSegmentation, volumeNode) -> None:
    """Restore the slice and the checked slices as they were before :func:`acceptSlice`."""
    if userSegmentation.GetID() != record.segmentationNodeId:
        raise ValueError("this accept was made on another segmentation")
    where = _slab(record.axis, record.index)
    masks = {}
    for sid in record.segmentIds:
        mask = segmentsToArray(userSegmentation, [sid], volumeNode) > 0
        mask[where] = record.previousSlices[sid]
        masks[sid] = mask
    writeSegmentArrays(userSegmentation, masks, volumeNode)
    labeledslices.setCheckedSlices(userSegmentation, *record.previousChecked)
