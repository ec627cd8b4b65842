"""A study: several scans, one training, one review list across them (:class:`StudySession`), without any GUI.

The same rounds as :class:`~.session.Session` (the job's start, cancel and previews are :class:`~.session._Rounds`),
over several (volume, segmentation) pairs; and volumes loaded later segmented with the study's model.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

from . import review as reviewlib
from .cache import latestCheckpoint, newJobDir
from .jobclient import JobClient
from .jobexport import ExportedStudy, StudyVolume, _safeName, exportStudyJob
from .mrmlio import writeVolume
from .resultimport import DEFAULT_OPACITY, ImportedResult, importResults, showConfidence
from .session import Progress, _move, _Rounds, checkTrainRequest, progressText

__all__ = ["StudySession", "StudyEntry", "PREDICT_FOLDER"]

logger = logging.getLogger(__name__)

PREDICT_FOLDER = "predictions"


@dataclasses.dataclass
class StudyEntry:
    """One volume of the study and what was imported for it."""

    volume: StudyVolume
    result: ImportedResult | None = None
    trained: bool = True  # False: segmented later with the model (applyToVolumes), not trained on


class StudySession(_Rounds):
    """A study: several scans, one training, one review list across them, without any GUI.

    :class:`Session` for several (volume, segmentation) pairs: it exports one
    format-2 job (docs/JOB_FORMAT.md, "several volumes"; :func:`~.jobexport.exportStudyJob`), runs the engine,
    imports every volume's prediction into its own pseudo-label and confidence nodes (the user's segmentations
    are never modified), and keeps one review list across the volumes (:class:`~.review.StudyReview`), least
    confident first. Jumping to an entry shows its volume (background of every slice view, its confidence as
    the foreground, its pseudo-labels visible and the other volumes' hidden) and its slice; accepting copies that
    slice into that volume's segmentation. Retraining exports every pair again, so every accepted slice (marked
    checked on its segmentation) is a labelled slice of its volume in the next job.

    :meth:`StudySession.applyToVolumes` segments volumes loaded later with the last run's model, without
    training (``semiseg predict --run RUN --images ... --out OUT``); their slices join the review list, and
    accepting one of their slices makes a segmentation for that volume (``<volume> labels``) that joins the study.

    While a study trains, each labelled volume's previews (the engine's ``preview`` events, one volume at a time in
    turn) are imported as :class:`~.session.Session` imports them (:class:`~.session._Rounds`): into the round's own
    nodes, made by that volume's first preview of the round and updated in place, marked preliminary; the last
    round's result nodes are not written while the round runs (hidden while its preview is shown). Its entries in
    the review list are the preview's, and the views keep showing the volume they show. The final result of each
    volume replaces its preview in the same nodes. The progress line names the volumes previewed (:meth:`poll`). A
    round that ends without its result (cancelled, failed) leaves the last round's results as they were, and they
    are what the review list and the views show again; the round's previews stay in the scene, hidden and marked
    preliminary (a volume without an earlier result keeps showing its preview, as a first :class:`Session` round).

    Args: as :class:`~.session._Rounds`.
    """

    _previewOverlay = False  # the volume shown decides which confidence is the foreground (showVolume)

    def __init__(self, scene, python: str, cacheDir: str, env: dict | None = None, pythonPath=()):
        super().__init__(scene, python, cacheDir, env, pythonPath)
        self.pairs: list[tuple] = []  # (volume node, segmentation node or None): what the next training exports
        self.study: ExportedStudy | None = None
        self.entries: dict[str, StudyEntry] = {}  # volume name -> entry, in study order
        self.review: reviewlib.StudyReview | None = None
        self.history: list[tuple[str, reviewlib.AcceptRecord]] = []
        self.opacity = DEFAULT_OPACITY
        self.shown: str | None = None  # the volume whose layers are shown (showVolume)
        self._pending: tuple | None = None  # what the running job is: ("train", study) or ("predict", [volumes], dir)
        self._lastEntries: dict[str, StudyEntry] = {}  # while a study trains: the entries as the last round left them
        self._applied = 0

    # -- jobs -------------------------------------------------------------------------------------

    def start(self, pairs, *, method: str = "unimatch", train: dict | None = None,
              methodOptions: dict | None = None, retrain: bool = False,
              keepLargestIsland: str = "auto") -> ExportedStudy:
        """Export a format-2 job of ``pairs`` and start the engine on it. ``retrain`` warm-starts from the last
        run's checkpoint; ``keepLargestIsland``: ``"auto"``, ``"all"`` or ``"none"`` (:func:`~.jobexport.exportJob`).

        Raises:
            ValueError: a request :func:`~.session.checkTrainRequest` or :func:`~.jobexport.exportStudyJob` refuses.
            RuntimeError: a job is running, or ``retrain`` without a finished run.
        """
        pairs = [(volume, segmentation) for volume, segmentation in pairs]
        labelled = next(((v, s) for v, s in pairs if s is not None), (None, None))
        if not pairs:
            raise ValueError("Select a volume and a segmentation.")
        train = checkTrainRequest(*labelled, method, train)
        study = self._launch(
            lambda jobDir, initCheckpoint: exportStudyJob(jobDir, pairs, method=method, train=train,
                                                          methodOptions=methodOptions, initCheckpoint=initCheckpoint,
                                                          keepLargestIsland=keepLargestIsland),
            retrain)
        self.pairs, self._pending, self._lastEntries = pairs, ("train", study), dict(self.entries)
        return study

    def retrain(self, **options) -> ExportedStudy:
        """:meth:`start` on the study's pairs as they are now (accepted slices included), warm-started."""
        return self.start(self.pairs, retrain=True, **options)

    def applyToVolumes(self, volumeNodes) -> str:
        """Segment ``volumeNodes`` with the last run's model, without training; returns the job folder.

        Runs ``semiseg predict --run RUN --images ... --out DIR/predictions``; :meth:`poll` imports each
        volume's pseudo-labels and confidence and adds its slices to the review list.

        Raises:
            ValueError: no volume, or a volume already in the study.
            RuntimeError: a job is running, or there is no finished run.
        """
        volumeNodes = list({node.GetID(): node for node in volumeNodes if node is not None}.values())  # once each
        if not volumeNodes:
            raise ValueError("select the volumes to segment")
        known = {entry.volume.volumeNodeId for entry in self.entries.values()}
        known |= {v.GetID() for v, _ in self.pairs}
        for node in volumeNodes:
            if node.GetID() in known:
                raise ValueError(f"volume {node.GetName()!r} is already in the study")
            if node.GetImageData() is None:
                raise ValueError(f"volume {node.GetName()!r} holds no image data")
        if self.running:
            raise RuntimeError("a job is already running; cancel it first")
        if self.study is None or latestCheckpoint(self.lastRunDir) is None:
            raise RuntimeError("there is no trained model yet; train the study first")
        jobDir = newJobDir(self.cacheDir)
        try:
            volumes, files = [], []
            for node in volumeNodes:
                self._applied += 1
                name = f"a{self._applied:02d}_{_safeName(node.GetName())}"
                files.append(writeVolume(node, os.path.join(jobDir, name + ".nrrd")))
                volumes.append(StudyVolume(name, node.GetID(), None, [], None, []))
            out = os.path.join(jobDir, PREDICT_FOLDER)
            arguments = ["predict", "--run", self.lastRunDir, "--images", *files, "--out", out, "--format", "nrrd"]
            client = JobClient(self.python, jobDir, out, env=self.env, pythonPath=self.pythonPath,
                               arguments=arguments)
            client.start()
        except Exception:
            shutil.rmtree(jobDir, ignore_errors=True)
            raise
        self.client, self._handled, self._pending = client, False, ("predict", volumes, jobDir)
        self.previews = {}
        return jobDir

    def poll(self) -> Progress:
        """New progress; imports the results once when the job is done. Never blocks.

        While a study trains, the previews of this poll are imported (``previewed``) and the progress line says
        which volumes' previews are shown (``previews of scanA (iteration 20), scanB (iteration 10) —
        preliminary``)."""
        if self.client is None:
            return Progress("idle", [], 0.0, "")
        events = self.client.poll()
        state = self.client.state()
        if state == "running" or self._handled:
            previewed = state == "running" and self._importStudyPreviews(events)
            return Progress(state, events, self._fraction(), self._text(), previewed=previewed)
        if not self.client.finished:
            return Progress("running", events, self._fraction(), self._text())
        events += self.client.poll()
        self._handled = True
        if state in ("cancelled", "failed"):
            restored, note = self._restoreLastRound()
            why = "The job was cancelled." if state == "cancelled" else self.client.errorMessage()
            return Progress(state, events, self._fraction(), self._text(), why + note, restored=restored)
        try:
            if self._pending[0] == "train":
                self._importStudy(self._pending[1])
            else:
                self._importApplied(self._pending[1], self._pending[2])
        except Exception as err:  # noqa: BLE001 - reported to the user
            restored, note = self._restoreLastRound()
            return Progress("failed", events, 1.0, self._text(), f"Results could not be imported: {err}{note}",
                            restored=restored)
        return Progress("done", events, 1.0, self._text(), imported=True)

    def _fraction(self) -> float:
        progress = self.client.lastProgress
        if self._pending and self._pending[0] == "predict":
            return min(1.0, progress.get("number", 0) / max(1, progress.get("of") or 1))
        return min(1.0, progress.get("iteration", 0) / max(1, progress.get("iterations") or 1))

    def _text(self) -> str:
        progress = self.client.lastProgress
        if self._pending and self._pending[0] == "predict":
            return f"Segmented {progress.get('number', 0)}/{progress.get('of', '?')} volumes" if progress else ""
        return self._withPreviews(progressText(progress))

    # -- import -----------------------------------------------------------------------------------

    def _updatable(self, volume: StudyVolume, study: ExportedStudy) -> ImportedResult | None:
        """The result whose nodes the final result of ``volume`` updates in place: its entry's (this round's preview,
        else the last round's result) when that has the same segments, else None (new nodes)."""
        before = next((e for e in self.entries.values() if e.volume.volumeNodeId == volume.volumeNodeId), None)
        same = before is not None and [s["id"] for s in before.volume.segments or study.segments] == [
            s["id"] for s in volume.segments or study.segments]
        return before.result if same else None

    def _importStudy(self, study: ExportedStudy) -> None:
        """Every volume's prediction into its nodes (its preview's, else the previous round's, updated in place)."""
        inStudy = {volume.volumeNodeId for volume in study.volumes}
        imported = {}
        for volume in study.volumes:
            result = importResults(self.scene, volume.exported(study), name=volume.name, showOverlay=False,
                                   into=self._updatable(volume, study))
            imported[volume.name] = StudyEntry(volume, result)
        later = [e for e in self.entries.values() if e.volume.volumeNodeId not in inStudy]  # segmented later: kept
        self.study = study
        self.entries = {**imported, **{e.volume.name: e for e in later}}
        self.lastRunDir = study.runDir
        self.history = []
        self.previews, self._lastEntries = {}, {}
        self._rebuildReview()

    def _previewTarget(self, name: str):
        if not self._pending or self._pending[0] != "train":
            return None
        study = self._pending[1]
        try:
            volume = study.volume(name)
        except KeyError:
            return None
        return volume.exported(study), self.previews.get(name)  # the round's own nodes; the last round's untouched

    def _previewLabel(self, name: str) -> str:
        volume = self.scene.GetNodeByID(self._pending[1].volume(name).volumeNodeId)
        return volume.GetName() if volume is not None else name

    def _importStudyPreviews(self, events: list) -> bool:
        """Import the last preview of each volume among ``events`` (:meth:`_Rounds._importPreviews`): it becomes that
        volume's entry (its slices in the review list); True when one was imported."""
        names = self._importPreviews(events)
        if not names:
            return False
        study = self._pending[1]
        for name in names:
            volume = study.volume(name)
            self.entries = {n: e for n, e in self.entries.items()
                            if n == name or e.volume.volumeNodeId != volume.volumeNodeId}  # a name of an earlier round
            self.entries[name] = StudyEntry(volume, self.previews[name])
        self._rebuildReview(keep=True)
        return True

    def _reviewLastRound(self, previews):
        """The entries as the last round left them, reviewed and shown again (:meth:`_Rounds._restoreLastRound`
        hides the previews); a volume without an earlier result keeps its preview's entry."""
        before, self._lastEntries = self._lastEntries, {}
        if not before or not previews:  # a first round (its previews are what there is), or no preview came
            return None
        hadResult = {entry.volume.volumeNodeId for entry in before.values()}
        entries, kept = dict(before), set()
        for name, preview in previews.items():
            entry = self.entries.get(name)
            if entry is not None and entry.result is preview and entry.volume.volumeNodeId not in hadResult:
                entries[name] = entry  # no earlier result: its preview stays reviewed
                kept.add(name)
        self.entries = entries
        self._rebuildReview(keep=True)
        return kept

    def _importApplied(self, volumes: list[StudyVolume], jobDir: str) -> None:
        for volume in volumes:
            result = importResults(self.scene, volume.exported(self.study, runDir=jobDir), name=volume.name,
                                   folder=PREDICT_FOLDER, showOverlay=False)
            self.entries[volume.name] = StudyEntry(volume, result, trained=False)
            if result.review and self.review is not None:
                self.review.addVolume(volume.name, result.review)
        if self.review is None:
            self._rebuildReview()

    def _rebuildReview(self, keep: bool = False) -> None:
        """The review list from the entries; it shows its current entry's volume. ``keep`` (after a preview) keeps
        the current entry and shows the study's volume in the slice views (the one shown last when several are;
        the current entry's when they show none)."""
        current = self.review.currentSlice if keep and self.review is not None else None
        reviews = [(name, e.result.review) for name, e in self.entries.items() if e.result and e.result.review]
        self.review = reviewlib.StudyReview(reviews) if reviews else None
        if self.review is None or self.review.currentSlice is None:
            return
        if not keep:
            return self.showVolume(self.review.currentSlice["volume"])
        if current is not None:
            try:
                self.review.current = self.review.rowOfSlice(current["volume"], current["index"])
            except KeyError:
                pass
        inViews = self._namesInViews()
        name = self.shown if self.shown in inViews else inViews[0] if inViews else None
        if name is None:
            name = self.review.currentSlice["volume"]
        elif current is None:  # the first preview: the list starts at the volume shown
            rows = (r for r, e in enumerate(self.review.slices) if e["volume"] == name)
            self.review.current = next(rows, self.review.current)
        try:
            self.showVolume(name)
        except RuntimeError as err:  # its volume was removed from the scene: the views stay as they are
            logger.debug("preview of %s not shown: %s", name, err)

    def _namesInViews(self) -> list[str]:
        """The entries whose volume is the background of a slice view."""
        composites = self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        shown = {composites.GetItemAsObject(i).GetBackgroundVolumeID() for i in range(composites.GetNumberOfItems())}
        return [name for name, e in self.entries.items() if e.volume.volumeNodeId in shown]

    # -- showing ----------------------------------------------------------------------------------

    @property
    def result(self) -> ImportedResult | None:
        """The result of the volume shown (:meth:`showVolume`; else of the current review entry, else the first
        volume's); a preview while the study trains (``preliminary``)."""
        current = self.review.currentSlice if self.review is not None else None
        name = self.shown if self.shown in self.entries else current["volume"] if current else None
        entry = self.entries.get(name) if name else next(iter(self.entries.values()), None)
        return entry.result if entry is not None else None

    def entry(self, name: str) -> StudyEntry:
        if name not in self.entries:
            raise KeyError(f"no volume {name!r} in the study")
        return self.entries[name]

    def showVolume(self, name: str) -> None:
        """Show volume ``name``: the background of every slice view, its confidence as the foreground and its
        pseudo-labels visible; the other volumes' pseudo-labels are hidden."""
        entry = self.entry(name)
        volumeNode = self.scene.GetNodeByID(entry.volume.volumeNodeId)
        if volumeNode is None:
            raise RuntimeError(f"the volume of {name!r} was removed from the scene")
        composites = self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for i in range(composites.GetNumberOfItems()):
            composites.GetItemAsObject(i).SetBackgroundVolumeID(volumeNode.GetID())
        if entry.result is not None and entry.result.confidenceNode is not None:
            showConfidence(self.scene, entry.result.confidenceNode, volumeNode, self.opacity)
        for other in [*self.entries.values(), *self._lastEntries.values()]:  # a preview's last result hidden too
            if other.result is not None:
                self._setVisible(other.result.segmentationNode, other.result is entry.result)
        self.shown = name

    # -- review -----------------------------------------------------------------------------------

    def selectReview(self, row: int | None = None, step: int = 0) -> dict | None:
        """As :meth:`Session.selectReview`, across the study: shows the entry's volume and slice."""
        _move(self.review, row, step)
        return self.jumpToCurrent()

    def jumpToCurrent(self) -> dict | None:
        if self.review is None or self.review.currentSlice is None:
            return None
        entry = self.review.currentSlice
        volume, _user, _pseudo = self._nodes(entry["volume"], needUser=False)
        self.showVolume(entry["volume"])
        reviewlib.jumpSlices(self.scene, reviewlib.sliceCenterRas(volume, entry["axis"], entry["index"]))
        return entry

    def _nodes(self, name: str, needUser: bool = True):
        entry = self.entry(name)
        volume = self.scene.GetNodeByID(entry.volume.volumeNodeId)
        user = self.scene.GetNodeByID(entry.volume.segmentationNodeId) if entry.volume.segmentationNodeId else None
        pseudo = entry.result.segmentationNode if entry.result is not None else None
        if volume is None or pseudo is None or pseudo.GetScene() is not self.scene or (needUser and user is None):
            raise RuntimeError(f"the volume, its segmentation or its pseudo-labels ({name}) were removed from the "
                               "scene")
        return volume, user, pseudo

    def _userSegmentation(self, name: str):
        """The user's segmentation of volume ``name``; a new one (the study's segments, empty) when it has none,
        which joins the study's pairs."""
        entry = self.entry(name)
        volume, user, _ = self._nodes(name, needUser=False)
        if user is not None:
            return user
        existing = next((s for v, s in self.pairs if v.GetID() == volume.GetID() and s is not None), None)
        if existing is None:
            existing = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} labels")
            existing.CreateDefaultDisplayNodes()
            existing.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            for segment in self.study.segments:
                existing.GetSegmentation().AddEmptySegment(segment["id"], segment["name"], segment["color"])
        entry.volume.segmentationNodeId = existing.GetID()
        entry.volume.segments = entry.volume.segments or [dict(s) for s in self.study.segments]
        self.pairs = [(v, s) for v, s in self.pairs if v.GetID() != volume.GetID()] + [(volume, existing)]
        return existing

    def acceptCurrent(self) -> tuple[str, int]:
        """Copy the current review slice of its volume's pseudo-labels into that volume's segmentation (made for a
        volume segmented later); returns ``(volume name, slice index)``."""
        if self.review is None or self.review.currentSlice is None:
            raise RuntimeError("no slice selected in the review list")
        current = self.review.currentSlice
        name, index, axis = current["volume"], current["index"], current["axis"]
        user = self._userSegmentation(name)
        volume, user, pseudo = self._nodes(name)
        segmentIds = [s["id"] for s in self.entry(name).volume.segments]
        record = reviewlib.acceptSlice(user, pseudo, volume, segmentIds, axis, index)
        self.history.append((name, record))
        self.review.setLabeled(name, index, True)
        return name, index

    def undoAccept(self) -> tuple[str, int] | None:
        """Undo the last accepted slice; returns ``(volume name, slice index)`` (None when nothing to undo)."""
        if not self.history:
            return None
        name, record = self.history.pop()
        volume, user, _ = self._nodes(name)
        reviewlib.undoAccept(record, user, volume)
        if self.review is not None:
            try:
                self.review.setLabeled(name, record.index, False)
            except KeyError:
                pass
        return name, record.index
