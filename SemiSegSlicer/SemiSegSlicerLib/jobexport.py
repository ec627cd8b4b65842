"""Scene -> job folder (docs/JOB_FORMAT.md; the keys and format version of the engine's contract).

Writes the volume, a label map of the user's segments on the volume's grid (segment ``n`` of the
exported list gets label ``n + 1``), the extra unlabelled volumes and ``job.json``. What the engine
does not need but the front end does to read the results back (segment IDs, names and colours,
node IDs) goes to the sidecar ``slicer.json`` beside ``job.json``; ``job.json`` holds only the keys of
the format, since the engine refuses unknown keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from semiseg.contract import (
    DEFAULT_METHOD,
    ISLAND_CHOICES,
    JobFields,
    VolumeFields,
    VolumesJobFields,
    choose_axis,
    labeled_slices,
    painted_slices,
)

from . import labeledslices
from .mrmlio import checkSameTransform, segmentsToArray, writeArrayAsVolume, writeVolume

__all__ = ["SIDECAR", "ExportedJob", "StudyVolume", "ExportedStudy", "segmentList", "exportJob", "exportStudyJob",
           "loadExportedJob"]

SIDECAR = "slicer.json"
IMAGE_FILE = "image.nrrd"
LABELS_FILE = "labels.nrrd"


@dataclasses.dataclass
class ExportedJob:
    """What :func:`exportJob` wrote, and what reading the results back needs."""

    jobDir: str
    runDir: str
    volumeNodeId: str
    segmentationNodeId: str
    segments: list[dict]  # [{"id", "name", "color"}], in label order (label n + 1 = segments[n])
    classes: list[str]
    axis: int | None  # the IJK axis written to job.json, or None for "auto"
    labeledSlices: list[int]  # painted + checked, along ``axis`` (or the guessed axis when "auto")
    unlabeled: dict[str, str]  # prediction name -> volume node ID
    job: dict

    @property
    def segmentIds(self) -> list[str]:
        return [segment["id"] for segment in self.segments]

    def sidecar(self) -> dict:
        values = dataclasses.asdict(self)
        values.pop("job")
        return values


def segmentList(segmentationNode) -> list[dict]:
    """``[{"id", "name", "color"}]`` of every segment, in the segmentation's order."""
    segmentation = segmentationNode.GetSegmentation()
    segments = []
    for n in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(n)
        segments.append({"id": segmentation.GetNthSegmentID(n), "name": segment.GetName(),
                         "color": [float(c) for c in segment.GetColor()]})
    return segments


def _islands(choice: str):
    """The job's ``keep_largest_island`` for the front ends' choice; ValueError for another word."""
    if choice not in ISLAND_CHOICES:
        raise ValueError(f"keep largest island must be one of {', '.join(ISLAND_CHOICES)}, got {choice!r}")
    return ISLAND_CHOICES[choice]


def _safeName(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "volume"


def exportJob(
    jobDir: str | os.PathLike,
    volumeNode,
    segmentationNode,
    *,
    unlabeledVolumes=(),
    method: str = DEFAULT_METHOD,
    train: dict | None = None,
    methodOptions: dict | None = None,
    axis: int | None = None,
    initCheckpoint: str | None = None,
    outputFormat: str = "nrrd",
    keepLargestIsland: str = "auto",
) -> ExportedJob:
    """Write a job folder for the engine from the scene; the scene is only read.

    Args:
        jobDir: a new or empty folder.
        volumeNode: the scalar volume to segment.
        segmentationNode: the user's labels; every segment is one class, in the segmentation's order.
        unlabeledVolumes: extra scalar volume nodes used as unlabelled data.
        method, train, methodOptions, initCheckpoint, outputFormat: the job.json fields.
        keepLargestIsland: ``"auto"``, ``"all"`` or ``"none"`` (:data:`~semiseg.contract.ISLAND_CHOICES`), the job's
            ``keep_largest_island``.
        axis: the slicing axis (IJK). Default: the axis of the checked slices if any, else "auto".

    Raises:
        ValueError: no segment, no labelled slice, an axis that contradicts the checked slices,
            or a volume and segmentation under different transforms.
        FileExistsError: ``jobDir`` already holds a job.
    """
    jobDir = os.path.abspath(os.fspath(jobDir))
    islands = _islands(keepLargestIsland)
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise ValueError("select a volume that holds image data")
    if segmentationNode is None or segmentationNode.GetSegmentation().GetNumberOfSegments() == 0:
        raise ValueError("the segmentation has no segment: add one segment per structure and paint a few slices")
    checkSameTransform(volumeNode, segmentationNode)
    if os.path.exists(os.path.join(jobDir, "job.json")):
        raise FileExistsError(f"{jobDir} already holds a job")

    segments = segmentList(segmentationNode)
    labels = segmentsToArray(segmentationNode, [s["id"] for s in segments], volumeNode)
    checkedAxis, checked = labeledslices.checkedSlices(segmentationNode)
    if checked:
        if axis is not None and axis != checkedAxis:
            raise ValueError(f"axis {axis} was asked but the checked slices lie along axis {checkedAxis}")
        axis = checkedAxis
    sliceAxis = axis if axis is not None else choose_axis(labels, volumeNode.GetSpacing()[::-1])
    labeled = labeled_slices(labels, sliceAxis, checked)
    if not labeled:
        raise ValueError("no labelled slice: paint at least one slice, or mark slices you checked as empty")
    painted = set(painted_slices(labels, sliceAxis))

    os.makedirs(jobDir, exist_ok=True)
    writeVolume(volumeNode, os.path.join(jobDir, IMAGE_FILE))
    writeArrayAsVolume(labels, volumeNode, os.path.join(jobDir, LABELS_FILE))
    unlabeled, unlabeledFiles = {}, []
    for n, node in enumerate(unlabeledVolumes):
        if node is None or node.GetID() == volumeNode.GetID():
            continue
        name = f"unlabeled{n + 1:02d}_{_safeName(node.GetName())}"
        writeVolume(node, os.path.join(jobDir, name + ".nrrd"))
        unlabeled[name] = node.GetID()
        unlabeledFiles.append(name + ".nrrd")

    job = dataclasses.asdict(
        JobFields(
            image=IMAGE_FILE,
            labels=LABELS_FILE,
            unlabeled=unlabeledFiles,
            labeled_slices=sorted(set(checked) - painted),
            axis=axis if axis is not None else "auto",
            classes=["background"] + [s["name"] for s in segments],
            method=method,
            train={k: v for k, v in (train or {}).items() if v is not None},
            method_options=dict(methodOptions or {}),
            init_checkpoint=os.path.abspath(initCheckpoint) if initCheckpoint else None,
            output_format=outputFormat,
            keep_largest_island=islands,
        )
    )
    exported = ExportedJob(
        jobDir=jobDir,
        runDir=os.path.join(jobDir, job["run_dir"]),
        volumeNodeId=volumeNode.GetID(),
        segmentationNodeId=segmentationNode.GetID(),
        segments=segments,
        classes=job["classes"],
        axis=axis,
        labeledSlices=labeled,
        unlabeled=unlabeled,
        job=job,
    )
    _writeJson(os.path.join(jobDir, SIDECAR), exported.sidecar())
    _writeJson(os.path.join(jobDir, "job.json"), job)  # last: a folder with job.json is complete
    return exported


@dataclasses.dataclass
class StudyVolume:
    """One volume of a study (:func:`exportStudyJob`): its engine name (``predictions/<name>/``) and nodes."""

    name: str
    volumeNodeId: str
    segmentationNodeId: str | None  # None: no segmentation (unlabelled data)
    segments: list[dict]  # this segmentation's segments in class order (label n + 1 = segments[n]); [] if none
    axis: int | None  # the IJK axis written to job.json, or None for "auto"
    labeledSlices: list[int]  # [] : unlabelled data of the training (no segmentation, or nothing labelled on it)

    def exported(self, study: ExportedStudy, runDir: str | None = None) -> ExportedJob:
        """This volume as the single-volume :class:`ExportedJob` that :func:`~.resultimport.importResults`
        reads (called ``name`` in its ``unlabeled`` map); segments default to the study's."""
        return ExportedJob(jobDir=study.jobDir, runDir=runDir or study.runDir, volumeNodeId=self.volumeNodeId,
                           segmentationNodeId=self.segmentationNodeId or "", segments=self.segments or study.segments,
                           classes=study.classes, axis=self.axis, labeledSlices=self.labeledSlices,
                           unlabeled={self.name: self.volumeNodeId}, job={})


@dataclasses.dataclass
class ExportedStudy:
    """What :func:`exportStudyJob` wrote: a format-2 job over several volumes."""

    jobDir: str
    runDir: str
    volumes: list[StudyVolume]
    segments: list[dict]  # the classes' segments ({"id", "name", "color"}) of the first labelled segmentation
    classes: list[str]
    job: dict

    def volume(self, name: str) -> StudyVolume:
        for volume in self.volumes:
            if volume.name == name:
                return volume
        raise KeyError(f"no volume {name!r} in this study")


def _studySegments(segmentationNode, reference: list[dict]) -> list[dict]:
    """``segmentationNode``'s segments in the order of the class names of ``reference`` (matched by name)."""
    own = segmentList(segmentationNode)
    byName = {s["name"]: s for s in own}
    names = [s["name"] for s in reference]
    if len(byName) != len(own) or set(byName) != set(names):
        raise ValueError(f"segmentation {segmentationNode.GetName()!r} has the segments {[s['name'] for s in own]}, "
                         f"the study's classes are {names}: every segmentation of a study needs the same "
                         "segment names (one per structure)")
    return [byName[name] for name in names]


def exportStudyJob(
    jobDir: str | os.PathLike,
    pairs,
    *,
    method: str = DEFAULT_METHOD,
    train: dict | None = None,
    methodOptions: dict | None = None,
    initCheckpoint: str | None = None,
    outputFormat: str = "nrrd",
    keepLargestIsland: str = "auto",
) -> ExportedStudy:
    """Write a format-2 job folder (docs/JOB_FORMAT.md, "several volumes") for one training over a study.

    Args:
        pairs: ``(volume node, segmentation node or None)`` per volume. Each labelled volume gets its own labels
            file, its own checked-empty slices and axis, by the single-volume rules of :func:`exportJob`; a
            volume without segmentation, or whose segmentation holds no labelled slice, is unlabelled data.
            Segments are matched across segmentations by name; the classes are those of the first labelled one.
        method, train, methodOptions, initCheckpoint, outputFormat, keepLargestIsland: as for :func:`exportJob`.

    Raises:
        ValueError: no volume, a volume twice, no labelled volume, segmentations with other segment names,
            or a volume and segmentation under different transforms.
        FileExistsError: ``jobDir`` already holds a job.
    """
    jobDir = os.path.abspath(os.fspath(jobDir))
    islands = _islands(keepLargestIsland)
    pairs = [(v, s) for v, s in pairs]
    if not pairs:
        raise ValueError("select at least one volume")
    if os.path.exists(os.path.join(jobDir, "job.json")):
        raise FileExistsError(f"{jobDir} already holds a job")
    ids = [v.GetID() if v is not None else None for v, _ in pairs]
    if len(set(ids)) != len(ids):
        raise ValueError("a volume is listed twice in the study")
    reference = None
    for volumeNode, segmentationNode in pairs:
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise ValueError("select volumes that hold image data")
        if segmentationNode is not None and segmentationNode.GetSegmentation().GetNumberOfSegments():
            checkSameTransform(volumeNode, segmentationNode)
            reference = reference or segmentList(segmentationNode)
    if reference is None:
        raise ValueError("no segmentation with a segment: add one segment per structure and paint a few slices")

    volumes, entries, arrays = [], [], []
    for n, (volumeNode, segmentationNode) in enumerate(pairs):
        name = f"v{n + 1:02d}_{_safeName(volumeNode.GetName())}"
        segments, axis, labeled, checkedEmpty, labels = [], None, [], [], None
        if segmentationNode is not None and segmentationNode.GetSegmentation().GetNumberOfSegments():
            segments = _studySegments(segmentationNode, reference)
            labels = segmentsToArray(segmentationNode, [s["id"] for s in segments], volumeNode)
            checkedAxis, checked = labeledslices.checkedSlices(segmentationNode)
            axis = checkedAxis if checked else None
            sliceAxis = axis if axis is not None else choose_axis(labels, volumeNode.GetSpacing()[::-1])
            labeled = labeled_slices(labels, sliceAxis, checked)
            checkedEmpty = sorted(set(checked) - set(painted_slices(labels, sliceAxis)))
            if not labeled:  # nothing labelled on it yet: unlabelled data of the training (its segmentation kept)
                axis, labels = None, None
        volumes.append(StudyVolume(name, volumeNode.GetID(), segmentationNode.GetID() if segments else None,
                                   segments, axis, labeled))
        arrays.append(labels)
        entries.append(VolumeFields(image=name + ".nrrd", labels=name + "_labels.nrrd" if labels is not None else None,
                                    labeled_slices=checkedEmpty if labels is not None else [],
                                    axis=axis if axis is not None else "auto"))
    if all(labels is None for labels in arrays):
        raise ValueError("no labelled slice in any volume: paint at least one slice, or mark slices you checked "
                         "as empty")

    os.makedirs(jobDir, exist_ok=True)
    for (volumeNode, _), entry, labels in zip(pairs, entries, arrays):
        writeVolume(volumeNode, os.path.join(jobDir, entry.image))
        if labels is not None:
            writeArrayAsVolume(labels, volumeNode, os.path.join(jobDir, entry.labels))
    job = dataclasses.asdict(
        VolumesJobFields(
            volumes=entries,
            classes=["background"] + [s["name"] for s in reference],
            method=method,
            train={k: v for k, v in (train or {}).items() if v is not None},
            method_options=dict(methodOptions or {}),
            init_checkpoint=os.path.abspath(initCheckpoint) if initCheckpoint else None,
            output_format=outputFormat,
            keep_largest_island=islands,
        )
    )
    study = ExportedStudy(jobDir=jobDir, runDir=os.path.join(jobDir, job["run_dir"]), volumes=volumes,
                          segments=reference, classes=job["classes"], job=job)
    sidecar = dataclasses.asdict(study)
    sidecar.pop("job")
    _writeJson(os.path.join(jobDir, SIDECAR), sidecar)
    _writeJson(os.path.join(jobDir, "job.json"), job)  # last: a folder with job.json is complete
    return study


def loadExportedJob(jobDir: str | os.PathLike) -> ExportedJob:
    """Read back what :func:`exportJob` wrote (``job.json`` and the sidecar)."""
    jobDir = os.path.abspath(os.fspath(jobDir))
    with open(os.path.join(jobDir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    with open(os.path.join(jobDir, SIDECAR), encoding="utf-8") as f:
        sidecar = json.load(f)
    sidecar["jobDir"] = jobDir
    sidecar["runDir"] = os.path.join(jobDir, job.get("run_dir", "run"))
    return ExportedJob(job=job, **sidecar)


def _writeJson(path: str, value: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(temporary, path)
