"""One user's rounds of label -> train -> review -> accept -> retrain, without any GUI.

The Slicer module's logic (and the web front end) hold one :class:`Session` and call one method per
user action; a timer on the GUI thread calls :meth:`Session.poll`. Everything that touches the scene
happens in these calls, on the caller's thread; the engine runs out of process (:class:`JobClient`).

While training runs, the engine's ``preview`` events (docs/JOB_FORMAT.md) bring its pseudo-labels
as they are: :meth:`Session.poll` imports the last one of each poll into the round's own pseudo-label
and confidence nodes (made by the first preview, updated in place by the next ones), marked
preliminary, and the final result replaces it in the same nodes. A preview that cannot be read
(files being replaced) is skipped: the next one comes a few seconds later.

Studies (several scans, one training): :class:`StudySession`, which imports each labelled volume's previews
the same way (:class:`_Rounds`, the code both share).
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


class _Rounds:
    """What :class:`Session` and :class:`StudySession` share: the engine's process (started in a new folder of the
    cache, followed, cancelled) and the previews while it trains.

    Previews (docs/JOB_FORMAT.md, ``preview`` events): :meth:`_importPreviews` imports the last preview of each
    volume among a poll's events into that volume's preview nodes (made by its first preview, updated in place by
    the next ones; a subclass says which nodes in :meth:`_previewTarget`), marked preliminary, and keeps them in
    :attr:`previews` until the final result replaces them. A preview that cannot be read (files being replaced) is
    skipped: the next one comes a few seconds later. The user's segmentations are never written.

    Args:
        scene: the MRML scene.
        python: a Python executable that can run ``-m semiseg`` (PythonSlicer inside Slicer).
        cacheDir: where job folders are made.
        env, pythonPath: passed to :class:`JobClient`.
    """

    _previewOverlay = True  # a volume's first preview shows its confidence as the foreground layer

    def __init__(self, scene, python: str, cacheDir: str, env: dict | None = None, pythonPath=()):
        self.scene = scene
        self.python = python
        self.cacheDir = os.fspath(cacheDir)
        self.env = env
        self.pythonPath = list(pythonPath)
        self.client: JobClient | None = None
        self.lastRunDir: str | None = None
        self.previews: dict[str, ImportedResult] = {}  # volume name -> this round's preview shown (until the result)
        self._handled = True

    @property
    def running(self) -> bool:
        return self.client is not None and not self._handled

    def cancel(self, graceSeconds: float = 10.0) -> None:
        """Stop the running job and every process it started; the scene is not touched."""
        if self.client is not None:
            self.client.cancel(graceSeconds)

    def _launch(self, export, retrain: bool = False):
        """Write a job into a new folder of the cache with ``export(jobDir, initCheckpoint)`` (an
        :class:`ExportedJob` or :class:`ExportedStudy`) and start the engine on it; returns what ``export`` returned.
        ``retrain`` warm-starts from the last run's checkpoint. A folder whose job could not be written or started
        is removed again.

        Raises:
            RuntimeError: a job is running, or ``retrain`` without a finished run.
        """
        if self.running:
            raise RuntimeError("a job is already running; cancel it first")
        initCheckpoint = latestCheckpoint(self.lastRunDir) if retrain else None
        if retrain and initCheckpoint is None:
            raise RuntimeError("there is no finished run to retrain from; press Train first")
        jobDir = newJobDir(self.cacheDir)
        try:
            exported = export(jobDir, initCheckpoint)
            client = JobClient(self.python, exported.jobDir, exported.runDir, env=self.env, pythonPath=self.pythonPath)
            client.start()
        except Exception:
            shutil.rmtree(jobDir, ignore_errors=True)  # no half-made job left in the cache
            raise
        self.client, self._handled, self.previews = client, False, {}
        return exported

    # -- previews ---------------------------------------------------------------------------------

    def _previewTarget(self, name: str) -> tuple[ExportedJob, ImportedResult | None] | None:
        """Where the preview of volume ``name`` goes: the job as :func:`importResults` reads it and the result whose
        nodes it updates in place (None: new nodes); None when this session shows no preview of ``name``."""
        raise NotImplementedError

    def _previewLabel(self, name: str) -> str:
        """How :meth:`_previewSummary` names volume ``name`` ("": the session's only volume)."""
        return ""

    def _importPreviews(self, events: list) -> list[str]:
        """Import the last preview of each volume among ``events``; returns the names of the volumes whose preview
        is now shown (in :attr:`previews`)."""
        latest = {}
        for event in events:
            if event.get("event") == "preview" and isinstance(event.get("name"), str):
                iteration = event.get("iteration")
                latest.pop(event["name"], None)  # in the order of their last preview
                valid = isinstance(iteration, int) and not isinstance(iteration, bool)
                latest[event["name"]] = iteration if valid else 0
        shown = []
        for name, iteration in latest.items():
            target = self._previewTarget(name)
            if target is None:
                continue
            exported, into = target
            try:
                with vtkMessagesOff():  # a file caught while being replaced makes the readers complain
                    result = importResults(self.scene, exported, name=name, showOverlay=self._previewOverlay,
                                           folder="preview", iteration=iteration, into=into)
            except Exception as err:  # noqa: BLE001 - files being replaced: the next preview comes in seconds
                logger.debug("preview of %s at iteration %s skipped: %s", name, iteration, err)
                continue
            self.previews[name] = result
            shown.append(name)
        return shown

    def _previewSummary(self) -> str:
        """The previews shown, as every front end marks them: ``preview at iteration 20 — preliminary`` (one
        volume), ``previews of scanA (iteration 20), scanB (iteration 10) — preliminary`` (a study); "" for none."""
        labelled = [(self._previewLabel(name), result.iteration) for name, result in self.previews.items()]
        if not labelled:
            return ""
        if len(labelled) == 1 and not labelled[0][0]:
            return previewText(labelled[0][1])
        listed = ", ".join(f"{label} (iteration {iteration})" for label, iteration in labelled)
        return f"previews of {listed} — preliminary"

    def _withPreviews(self, text: str) -> str:
        """``text`` (the progress line) followed by :meth:`_previewSummary`."""
        shown = self._previewSummary()
        return f"{text} · {shown}" if text and shown else text or shown

    def _shownNote(self) -> str:
        """Said after a job that ended without its result: which previews the pseudo-labels shown are."""
        shown = self._previewSummary()
        return f" The pseudo-labels shown are the {shown}." if shown else ""


class Session(_Rounds):
    """One volume's rounds. Args: as :class:`_Rounds`."""

    def __init__(self, scene, python: str, cacheDir: str, env: dict | None = None, pythonPath=()):
        super().__init__(scene, python, cacheDir, env, pythonPath)
        self.exported: ExportedJob | None = None
        self.result: ImportedResult | None = None
        self.review: reviewlib.ReviewModel | None = None
        self.history: list[reviewlib.AcceptRecord] = []

    @property
    def preview(self) -> ImportedResult | None:
        """This round's preview while it is shown (until the final result)."""
        return self.previews.get("image")

    # -- training ---------------------------------------------------------------------------------

    def start(self, volumeNode, segmentationNode, *, unlabeledVolumes=(), method: str = "unimatch",
              train: dict | None = None, methodOptions: dict | None = None, retrain: bool = False) -> ExportedJob:
        """Export a job and start the engine on it. ``retrain`` warm-starts from the last run's checkpoint.

        Raises:
            ValueError: a request :func:`checkTrainRequest` refuses.
            RuntimeError: a job is running, or ``retrain`` without a finished run.
        """
        train = checkTrainRequest(volumeNode, segmentationNode, method, train)
        self.exported = self._launch(
            lambda jobDir, initCheckpoint: exportJob(
                jobDir, volumeNode, segmentationNode, unlabeledVolumes=unlabeledVolumes, method=method, train=train,
                methodOptions=methodOptions, initCheckpoint=initCheckpoint),
            retrain)
        return self.exported

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
        shown = self._shownNote()
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
        return self._withPreviews(progressText(progress))

    def _importResults(self) -> None:
        """The final result, into this round's preview nodes when there are some (it replaces the preview)."""
        self._adopt(importResults(self.scene, self.exported, into=self.preview))
        self.previews = {}
        self.lastRunDir = self.exported.runDir

    def _previewTarget(self, name: str):
        return (self.exported, self.preview) if name == "image" else None

    def _importPreview(self, events: list) -> bool:
        """Import the last preview of the job's image among ``events``; True when it is now shown."""
        keepSlice = self.preview is not None
        if not self._importPreviews(events):
            return False
        self._adopt(self.preview, keepSlice=keepSlice)
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
    turn) are imported into its nodes as :class:`Session` imports them (:class:`_Rounds`): the last round's nodes of
    that volume, else nodes made by its first preview, updated in place, marked preliminary; its entries in the
    review list are the preview's, and the views keep showing the volume they show. The final result of each volume
    replaces its preview in the same nodes. The progress line names the volumes previewed (:meth:`poll`).

    Args: as :class:`_Rounds`.
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
        self._applied = 0

    # -- jobs -------------------------------------------------------------------------------------

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
        study = self._launch(
            lambda jobDir, initCheckpoint: exportStudyJob(jobDir, pairs, method=method, train=train,
                                                          methodOptions=methodOptions, initCheckpoint=initCheckpoint),
            retrain)
        self.pairs, self._pending = pairs, ("train", study)
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
        shown = self._shownNote()
        if state == "cancelled":
            return Progress(state, events, self._fraction(), self._text(), "The job was cancelled." + shown)
        if state == "failed":
            return Progress(state, events, self._fraction(), self._text(), self.client.errorMessage() + shown)
        try:
            if self._pending[0] == "train":
                self._importStudy(self._pending[1])
            else:
                self._importApplied(self._pending[1], self._pending[2])
        except Exception as err:  # noqa: BLE001 - reported to the user
            return Progress("failed", events, 1.0, self._text(), f"Results could not be imported: {err}{shown}")
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
        """The result whose nodes a new result of ``volume`` updates in place: its entry's (this round's preview or
        the last round's result) when that has the same segments, else None (new nodes)."""
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
        self.previews = {}
        self._rebuildReview()

    def _previewTarget(self, name: str):
        if not self._pending or self._pending[0] != "train":
            return None
        study = self._pending[1]
        try:
            volume = study.volume(name)
        except KeyError:
            return None
        return volume.exported(study), self._updatable(volume, study)

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
        for other in self.entries.values():
            node = other.result.segmentationNode if other.result is not None else None
            if node is not None and node.GetScene() is self.scene and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(other is entry)
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
