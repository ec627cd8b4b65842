"""One user's rounds of label -> train -> review -> accept -> retrain, without any GUI.

The Slicer module's logic (and the web front end) hold one :class:`Session` and call one method per
user action; a timer on the GUI thread calls :meth:`Session.poll`. Everything that touches the scene
happens in these calls, on the caller's thread; the engine runs out of process (:class:`JobClient`).

While training runs, the engine's ``preview`` events (docs/JOB_FORMAT.md) bring its pseudo-labels
as they are: :meth:`Session.poll` imports the last one of each poll into the round's own pseudo-label
and confidence nodes (made by the first preview, updated in place by the next ones), marked
preliminary, and the final result replaces it in the same nodes. A preview that cannot be read
(files being replaced) is skipped: the next one comes a few seconds later.

Studies (several scans, one training): :class:`StudySession`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

from semiseg.contract import METHOD_LABELS, train_setting_problem

from . import review as reviewlib
from .cache import latestCheckpoint, newJobDir
from .jobclient import JobClient
from .jobexport import ExportedJob, ExportedStudy, StudyVolume, _safeName, exportJob, exportStudyJob
from .mrmlio import vtkMessagesOff, writeVolume
from .resultimport import DEFAULT_OPACITY, ImportedResult, importResults, previewText, showConfidence

__all__ = ["Session", "StudySession", "StudyEntry", "Progress", "progressText", "checkTrainRequest"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Progress:
    """What :meth:`Session.poll` reports."""

    state: str  # idle, running, done, cancelled, failed
    events: list
    fraction: float  # 0..1 of the iterations
    text: str  # iteration, loss, Dice, time left
    message: str = ""  # why a job failed or was cancelled
    imported: bool = False  # results were imported during this poll
    previewed: bool = False  # a preview (preliminary pseudo-labels) was imported during this poll

    @property
    def warnings(self) -> list[str]:
        """Warnings the engine sent with these events (e.g. no GPU found: training on the CPU)."""
        return [str(e["warning"]) for e in self.events if isinstance(e, dict) and e.get("warning")]

    @property
    def percent(self) -> float:
        """:attr:`fraction` in percent, rounded to 0.1."""
        return round(100.0 * self.fraction, 1)

    @property
    def status(self) -> str:
        """The status line a front end shows after this poll ("" leaves the previous one).

        While the job runs, :attr:`text`; once it ended, ``Done. <text>`` when the results were
        imported, else the first line of :attr:`message` (why it failed or was cancelled), else :attr:`text`.
        """
        if self.imported:
            return f"Done. {self.text}"
        if self.state != "running" and self.message:
            return self.message.splitlines()[0]
        return self.text

    @property
    def error(self) -> str:
        """The whole :attr:`message` when the job failed (to show in an error display), else ""."""
        return self.message if self.state == "failed" else ""


def progressText(progress: dict) -> str:
    """``Iteration 10/1000 · loss 0.710 · Dice 0.83 · ~2 min left`` from the last progress values."""
    parts = []
    if "iteration" in progress:
        parts.append(f"Iteration {progress['iteration']}/{progress.get('iterations', '?')}")
    if isinstance(progress.get("loss"), (int, float)):
        parts.append(f"loss {progress['loss']:.3f}")
    if isinstance(progress.get("dice"), (int, float)):
        parts.append(f"Dice {progress['dice']:.2f}")
    left = progress.get("seconds_left")
    if isinstance(left, (int, float)):
        parts.append(f"~{left / 60:.0f} min left" if left >= 90 else f"~{left:.0f} s left")
    return " · ".join(parts)


def checkTrainRequest(volumeNode, segmentationNode, method: str, train: dict | None = None) -> dict:
    """A front end's training request checked before anything is exported; returns ``train`` with
    ``iterations`` and ``size`` as integers (where given).

    Raises:
        ValueError: no volume or segmentation, a method the engine does not have, or iterations or a
            size outside the engine's limits (``semiseg.contract.train_setting_problem``).
    """
    if volumeNode is None or segmentationNode is None:
        raise ValueError("Select a volume and a segmentation.")
    if method not in METHOD_LABELS:
        raise ValueError(f"unknown method {method!r}")
    train = dict(train or {})
    for key in ("iterations", "size"):
        if key in train:
            train[key] = int(train[key] or 0)
    problem = train_setting_problem(train.get("iterations"), train.get("size"))
    if problem:
        raise ValueError(problem)
    return train


def _move(review, row: int | None, step: int) -> None:
    """Make ``row`` of ``review`` current (a negative one counts from the end), else move ``step`` rows (wrapping)."""
    if review is None:
        raise ValueError("there is no review list yet: train first")
    if row is not None:
        review.select(row % len(review) if row < 0 and len(review) else row)
    elif step:
        (review.next if step > 0 else review.previous)()


class Session:
    """Args:
        scene: the MRML scene.
        python: a Python executable that can run ``-m semiseg`` (PythonSlicer inside Slicer).
        cacheDir: where job folders are made.
        env, pythonPath: passed to :class:`JobClient`.
    """

    def __init__(self, scene, python: str, cacheDir: str, env: dict | None = None, pythonPath=()):
        self.scene = scene
        self.python = python
        self.cacheDir = os.fspath(cacheDir)
        self.env = env
        self.pythonPath = list(pythonPath)
        self.exported: ExportedJob | None = None
        self.client: JobClient | None = None
        self.result: ImportedResult | None = None
        self.review: reviewlib.ReviewModel | None = None
        self.history: list[reviewlib.AcceptRecord] = []
        self.lastRunDir: str | None = None
        self.preview: ImportedResult | None = None  # this round's preview while it is shown (until the final result)
        self._handled = True

    # -- training ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.client is not None and not self._handled

    def start(self, volumeNode, segmentationNode, *, unlabeledVolumes=(), method: str = "unimatch",
              train: dict | None = None, methodOptions: dict | None = None, retrain: bool = False) -> ExportedJob:
        """Export a job and start the engine on it. ``retrain`` warm-starts from the last run's checkpoint.

        Raises:
            ValueError: a request :func:`checkTrainRequest` refuses.
            RuntimeError: a job is running, or ``retrain`` without a finished run.
        """
        train = checkTrainRequest(volumeNode, segmentationNode, method, train)
        if self.running:
            raise RuntimeError("a training job is already running; cancel it first")
        initCheckpoint = latestCheckpoint(self.lastRunDir) if retrain else None
        if retrain and initCheckpoint is None:
            raise RuntimeError("there is no finished run to retrain from; press Train first")
        jobDir = newJobDir(self.cacheDir)
        try:
            exported = exportJob(jobDir, volumeNode, segmentationNode, unlabeledVolumes=unlabeledVolumes,
                                 method=method, train=train, methodOptions=methodOptions, initCheckpoint=initCheckpoint)
            client = JobClient(self.python, exported.jobDir, exported.runDir, env=self.env, pythonPath=self.pythonPath)
            client.start()
        except Exception:
            shutil.rmtree(jobDir, ignore_errors=True)  # no half-made job left in the cache
            raise
        self.exported, self.client, self._handled, self.preview = exported, client, False, None
        return exported

    def poll(self) -> Progress:
        """New progress; imports the results once when the job is done. Never blocks."""
        if self.client is None:
            return Progress("idle", [], 0.0, "")
        events = self.client.poll()
        progress = self.client.lastProgress
        fraction = progress.get("iteration", 0) / max(1, progress.get("iterations") or 1)
        state = self.client.state()
        if state == "running" or self._handled:
            previewed = state == "running" and self._importPreview(events)
            return Progress(state, events, min(1.0, fraction), self._text(progress), previewed=previewed)
        if not self.client.finished:  # exited; let the readers drain the last lines (the final result follows)
            return Progress("running", events, min(1.0, fraction), self._text(progress))
        events += self.client.poll()
        self._handled = True
        shown = f" The pseudo-labels shown are the {previewText(self.preview.iteration)}." if self.preview else ""
        if state == "cancelled":
            return Progress(state, events, fraction, progressText(progress), "Training was cancelled." + shown)
        if state == "failed":
            return Progress(state, events, fraction, progressText(progress), self.client.errorMessage() + shown)
        try:
            self._importResults()
        except Exception as err:  # noqa: BLE001 - reported to the user, scene left as it was
            return Progress("failed", events, 1.0, progressText(progress),
                            f"Results could not be imported: {err}{shown}")
        return Progress("done", events, 1.0, progressText(progress), imported=True)

    def _text(self, progress: dict) -> str:
        text = progressText(progress)
        if self.preview is None:
            return text
        return f"{text} · {previewText(self.preview.iteration)}" if text else previewText(self.preview.iteration)

    def cancel(self, graceSeconds: float = 10.0) -> None:
        """Stop the running job and every process it started; the scene is not touched."""
        if self.client is not None:
            self.client.cancel(graceSeconds)

    def _importResults(self) -> None:
        """The final result, into this round's preview nodes when there are some (it replaces the preview)."""
        self._adopt(importResults(self.scene, self.exported, into=self.preview))
        self.preview = None
        self.lastRunDir = self.exported.runDir

    def _importPreview(self, events: list) -> bool:
        """Import the last preview of the job's image among ``events``; True when it is now shown."""
        previews = [e for e in events if e.get("event") == "preview" and e.get("name") == "image"]
        if not previews:
            return False
        iteration = previews[-1].get("iteration")
        iteration = iteration if isinstance(iteration, int) and not isinstance(iteration, bool) else 0
        try:
            with vtkMessagesOff():  # a file caught while being replaced makes the readers complain
                result = importResults(self.scene, self.exported, folder="preview", iteration=iteration,
                                       into=self.preview)
        except Exception as err:  # noqa: BLE001 - files being replaced: the next preview comes in seconds
            logger.debug("preview at iteration %s skipped: %s", iteration, err)
            return False
        self._adopt(result, keepSlice=self.preview is not None)
        self.preview = result
        return True

    def _adopt(self, result: ImportedResult, keepSlice: bool = False) -> None:
        """Make ``result`` the one reviewed; ``keepSlice`` keeps the current review slice (a preview after another)."""
        current = self.review.currentSlice if keepSlice and self.review is not None else None
        self.result = result
        self.review = reviewlib.ReviewModel(result.review) if result.review else None
        if current is not None and self.review is not None:
            try:
                self.review.current = self.review.rowOfSlice(current["index"])
            except KeyError:
                pass
        if not keepSlice:
            self.history = []

    # -- review -----------------------------------------------------------------------------------

    def _nodes(self):
        if self.result is None or self.exported is None:
            raise RuntimeError("no results to review yet")
        volume = self.scene.GetNodeByID(self.exported.volumeNodeId)
        user = self.scene.GetNodeByID(self.exported.segmentationNodeId)
        pseudo = self.result.segmentationNode
        if volume is None or user is None or pseudo is None or pseudo.GetScene() is not self.scene:
            raise RuntimeError("the volume, your segmentation or the pseudo-labels were removed from the scene")
        return volume, user, pseudo

    def selectReview(self, row: int | None = None, step: int = 0) -> dict | None:
        """Make a review row current and show it (:meth:`jumpToCurrent`); returns its entry.

        ``row`` selects that row (a negative one counts from the end); else ``step`` moves that way
        from the current row (wrapping round the list); else the current row is shown again.

        Raises:
            ValueError: there is no review list yet.
        """
        _move(self.review, row, step)
        return self.jumpToCurrent()

    def jumpToCurrent(self) -> dict | None:
        """Show the current review slice in every slice view; returns its entry."""
        if self.review is None or self.review.currentSlice is None:
            return None
        volume, _user, _pseudo = self._nodes()
        entry = self.review.currentSlice
        reviewlib.jumpSlices(self.scene, reviewlib.sliceCenterRas(volume, self.review.axis, entry["index"]))
        return entry

    def acceptCurrent(self) -> int:
        """Copy the current review slice of the pseudo-labels into the user's labels; returns its index."""
        if self.review is None or self.review.currentSlice is None:
            raise RuntimeError("no slice selected in the review list")
        volume, user, pseudo = self._nodes()
        index = self.review.currentSlice["index"]
        record = reviewlib.acceptSlice(user, pseudo, volume, self.exported.segmentIds, self.review.axis, index)
        self.history.append(record)
        self.review.setLabeled(index, True)
        return index

    def undoAccept(self) -> int | None:
        """Undo the last accepted slice; returns its index (None when there is nothing to undo)."""
        if not self.history:
            return None
        volume, user, _pseudo = self._nodes()
        record = self.history.pop()
        reviewlib.undoAccept(record, user, volume)
        if self.review is not None:
            try:
                self.review.setLabeled(record.index, False)
            except KeyError:
                pass
        return record.index


# -- studies: several scans ------------------------------------------------------------------------

PREDICT_FOLDER = "predictions"


@dataclasses.dataclass
class StudyEntry:
    """One volume of the study and what was imported for it."""

    volume: StudyVolume
    result: ImportedResult | None = None
    trained: bool = True  # False: segmented later with the model (applyToVolumes), not trained on


class StudySession:
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

    Previews while a study trains are not imported (the final result is).

    Args: as :class:`Session`.
    """

    def __init__(self, scene, python: str, cacheDir: str, env: dict | None = None, pythonPath=()):
        self.scene = scene
        self.python = python
        self.cacheDir = os.fspath(cacheDir)
        self.env = env
        self.pythonPath = list(pythonPath)
        self.pairs: list[tuple] = []  # (volume node, segmentation node or None): what the next training exports
        self.study: ExportedStudy | None = None
        self.entries: dict[str, StudyEntry] = {}  # volume name -> entry, in study order
        self.review: reviewlib.StudyReview | None = None
        self.history: list[tuple[str, reviewlib.AcceptRecord]] = []
        self.client: JobClient | None = None
        self.lastRunDir: str | None = None
        self.opacity = DEFAULT_OPACITY
        self._pending: tuple | None = None  # what the running job is: ("train", study) or ("predict", [volumes], dir)
        self._handled = True
        self._applied = 0

    # -- jobs -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.client is not None and not self._handled

    def start(self, pairs, *, method: str = "unimatch", train: dict | None = None,
              methodOptions: dict | None = None, retrain: bool = False) -> ExportedStudy:
        """Export a format-2 job of ``pairs`` and start the engine on it. ``retrain`` warm-starts from the last
        run's checkpoint.

        Raises:
            ValueError: a request :func:`~.session.checkTrainRequest` or :func:`~.jobexport.exportStudyJob` refuses.
            RuntimeError: a job is running, or ``retrain`` without a finished run.
        """
        pairs = [(volume, segmentation) for volume, segmentation in pairs]
        labelled = next(((v, s) for v, s in pairs if s is not None), (None, None))
        if not pairs:
            raise ValueError("Select a volume and a segmentation.")
        train = checkTrainRequest(*labelled, method, train)
        if self.running:
            raise RuntimeError("a job is already running; cancel it first")
        initCheckpoint = latestCheckpoint(self.lastRunDir) if retrain else None
        if retrain and initCheckpoint is None:
            raise RuntimeError("there is no finished run to retrain from; press Train first")
        jobDir = newJobDir(self.cacheDir)
        try:
            study = exportStudyJob(jobDir, pairs, method=method, train=train, methodOptions=methodOptions,
                                   initCheckpoint=initCheckpoint)
            client = JobClient(self.python, study.jobDir, study.runDir, env=self.env, pythonPath=self.pythonPath)
            client.start()
        except Exception:
            shutil.rmtree(jobDir, ignore_errors=True)
            raise
        self.pairs = pairs
        self.client, self._handled, self._pending = client, False, ("train", study)
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
        return jobDir

    def cancel(self, graceSeconds: float = 10.0) -> None:
        """Stop the running job; the scene is not touched."""
        if self.client is not None:
            self.client.cancel(graceSeconds)

    def poll(self) -> Progress:
        """New progress; imports the results once when the job is done. Never blocks."""
        if self.client is None:
            return Progress("idle", [], 0.0, "")
        events = self.client.poll()
        state = self.client.state()
        if state == "running" or self._handled:
            return Progress(state, events, self._fraction(), self._text())
        if not self.client.finished:
            return Progress("running", events, self._fraction(), self._text())
        events += self.client.poll()
        self._handled = True
        if state == "cancelled":
            return Progress(state, events, self._fraction(), self._text(), "The job was cancelled.")
        if state == "failed":
            return Progress(state, events, self._fraction(), self._text(), self.client.errorMessage())
        try:
            if self._pending[0] == "train":
                self._importStudy(self._pending[1])
            else:
                self._importApplied(self._pending[1], self._pending[2])
        except Exception as err:  # noqa: BLE001 - reported to the user
            return Progress("failed", events, 1.0, self._text(), f"Results could not be imported: {err}")
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
        return progressText(progress)

    # -- import -----------------------------------------------------------------------------------

    def _importStudy(self, study: ExportedStudy) -> None:
        """Every volume's prediction into its nodes (the previous round's nodes updated in place)."""
        previous = {entry.volume.volumeNodeId: entry for entry in self.entries.values()}
        inStudy = {volume.volumeNodeId for volume in study.volumes}
        imported = {}
        for volume in study.volumes:
            before = previous.get(volume.volumeNodeId)
            same = before is not None and [s["id"] for s in before.volume.segments or study.segments] == [
                s["id"] for s in volume.segments or study.segments]
            into = before.result if same else None
            result = importResults(self.scene, volume.exported(study), name=volume.name, showOverlay=False, into=into)
            imported[volume.name] = StudyEntry(volume, result)
        later = [e for e in self.entries.values() if e.volume.volumeNodeId not in inStudy]  # segmented later: kept
        self.study = study
        self.entries = {**imported, **{e.volume.name: e for e in later}}
        self.lastRunDir = study.runDir
        self.history = []
        self._rebuildReview()

    def _importApplied(self, volumes: list[StudyVolume], jobDir: str) -> None:
        for volume in volumes:
            result = importResults(self.scene, volume.exported(self.study, runDir=jobDir), name=volume.name,
                                   folder=PREDICT_FOLDER, showOverlay=False)
            self.entries[volume.name] = StudyEntry(volume, result, trained=False)
            if result.review and self.review is not None:
                self.review.addVolume(volume.name, result.review)
        if self.review is None:
            self._rebuildReview()

    def _rebuildReview(self) -> None:
        reviews = [(name, e.result.review) for name, e in self.entries.items() if e.result and e.result.review]
        self.review = reviewlib.StudyReview(reviews) if reviews else None
        if self.review is not None and self.review.currentSlice is not None:
            self.showVolume(self.review.currentSlice["volume"])

    # -- showing ----------------------------------------------------------------------------------

    @property
    def result(self) -> ImportedResult | None:
        """The result of the volume shown (of the current review entry, else the first volume's)."""
        current = self.review.currentSlice if self.review is not None else None
        entry = self.entries.get(current["volume"]) if current else next(iter(self.entries.values()), None)
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
        for other in self.entries.values():
            node = other.result.segmentationNode if other.result is not None else None
            if node is not None and node.GetScene() is self.scene and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(other is entry)

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
