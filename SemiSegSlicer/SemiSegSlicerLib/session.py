"""One user's rounds of label -> train -> review -> accept -> retrain, without any GUI.

The Slicer module's logic (and the web front end) hold one :class:`Session` and call one method per
user action; a timer on the GUI thread calls :meth:`Session.poll`. Everything that touches the scene
happens in these calls, on the caller's thread; the engine runs out of process (:class:`JobClient`).

While training runs, the engine's ``preview`` events (docs/JOB_FORMAT.md) bring its pseudo-labels
as they are: :meth:`Session.poll` imports the last one of each poll into the round's own pseudo-label
and confidence nodes (made by the first preview, updated in place by the next ones), marked
preliminary, and the final result replaces it in the same nodes. A preview that cannot be read
(files being replaced) is skipped: the next one comes a few seconds later. A round that ends without
its result (cancelled, failed) leaves the last round's result as it was, and it is what is reviewed
and shown again (``Progress.restored``); the round's preview stays in the scene, hidden and marked
preliminary.

Studies (several scans, one training): :class:`~.study.StudySession` (``study.py``), which imports each labelled
volume's previews the same way (:class:`_Rounds`, the code both share).
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
from .jobexport import ExportedJob, exportJob
from .mrmlio import vtkMessagesOff
from .resultimport import ImportedResult, importResults, previewText

__all__ = ["Session", "Progress", "progressText", "checkTrainRequest"]

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
    restored: bool = False  # the last round's results are reviewed and shown again (a round ended without its own)

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
    """What :class:`Session` and :class:`~.study.StudySession` share: the engine's process (started in a new folder
    of the cache, followed, cancelled) and the previews while it trains.

    Previews (docs/JOB_FORMAT.md, ``preview`` events): :meth:`_importPreviews` imports the last preview of each
    volume among a poll's events into that volume's preview nodes (made by its first preview, updated in place by
    the next ones; a subclass says which nodes in :meth:`_previewTarget`), marked preliminary, and keeps them in
    :attr:`previews` until the final result replaces them. A preview that cannot be read (files being replaced) is
    skipped: the next one comes a few seconds later. The user's segmentations are never written.

    The last round's result nodes are not written while a round runs (its previews have their own nodes), so a
    round that ends without its result (cancelled, failed, not importable) restores them
    (:meth:`_restoreLastRound`): they are reviewed and shown again and the round's previews are hidden, kept in
    the scene and marked preliminary.

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
        :class:`ExportedJob` or :class:`~.jobexport.ExportedStudy`) and start the engine on it; returns what
        ``export`` returned. ``retrain`` warm-starts from the last run's checkpoint. A folder whose job could not be
        written or started is removed again.

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

    def _previewSummary(self, previews: dict[str, ImportedResult] | None = None) -> str:
        """The previews shown (or ``previews``), as every front end marks them: ``preview at iteration 20 —
        preliminary`` (one volume), ``previews of scanA (iteration 20), scanB (iteration 10) — preliminary`` (a
        study); "" for none."""
        previews = self.previews if previews is None else previews
        labelled = [(self._previewLabel(name), result.iteration) for name, result in previews.items()]
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

    # -- a round that ends without its result -----------------------------------------------------

    def _setVisible(self, node, visible: bool) -> None:
        """Show or hide a pseudo-label node (nothing when it was removed from the scene)."""
        if node is not None and node.GetScene() is self.scene and node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetVisibility(visible)

    def _reviewLastRound(self, previews: dict[str, ImportedResult]) -> set[str] | None:
        """A subclass's part of :meth:`_restoreLastRound`: the last round's results become the ones reviewed and
        shown again (``previews``: this round's, still in :attr:`previews`). Returns the names of the volumes
        whose preview stays reviewed (no earlier result); None when nothing changes back (a first round, or no
        preview came: what is reviewed is what there is)."""
        raise NotImplementedError

    def _restoreLastRound(self) -> tuple[bool, str]:
        """After a training that ended without its result: the last round's results are reviewed and shown again
        (:meth:`_reviewLastRound`), this round's previews hidden (kept in the scene, marked preliminary); a volume
        without an earlier result keeps its preview. Returns whether the results changed back
        (``Progress.restored``), and the note the message ends with (which results and previews are shown)."""
        previews = self.previews
        kept = self._reviewLastRound(previews)
        if kept is None:
            return False, self._shownNote()
        hidden = {name: preview for name, preview in previews.items() if name not in kept}
        for preview in hidden.values():
            self._setVisible(preview.segmentationNode, False)
        self.previews = {name: preview for name, preview in previews.items() if name in kept}
        note = ""
        if hidden:
            stay = "stay" if len(hidden) > 1 else "stays"
            note = f" The last results are shown again; the {self._previewSummary(hidden)} {stay} in the scene, hidden."
        return True, note + self._shownNote()


class Session(_Rounds):
    """One volume's rounds.

    A round's previews come into its own nodes (the last round's result is hidden while one is shown, not written);
    its final result replaces them in the same nodes. A round that ends without its result brings back the last
    round's result (:meth:`_reviewLastRound`): the job, result, review list and undo history as they were, the
    slice the user looks at kept current, its pseudo-labels and confidence shown; a first round keeps its preview.

    Args: as :class:`_Rounds`.
    """

    def __init__(self, scene, python: str, cacheDir: str, env: dict | None = None, pythonPath=()):
        super().__init__(scene, python, cacheDir, env, pythonPath)
        self.exported: ExportedJob | None = None
        self.result: ImportedResult | None = None
        self.review: reviewlib.ReviewModel | None = None
        self.history: list[reviewlib.AcceptRecord] = []
        self._last: tuple | None = None  # while a round runs: (exported, result, review, history) as the last left them

    @property
    def preview(self) -> ImportedResult | None:
        """This round's preview while it is shown (until the final result)."""
        return self.previews.get("image")

    # -- training ---------------------------------------------------------------------------------

    def start(self, volumeNode, segmentationNode, *, unlabeledVolumes=(), method: str = "unimatch",
              train: dict | None = None, methodOptions: dict | None = None, retrain: bool = False,
              keepLargestIsland: str = "auto") -> ExportedJob:
        """Export a job and start the engine on it. ``retrain`` warm-starts from the last run's checkpoint;
        ``keepLargestIsland``: ``"auto"``, ``"all"`` or ``"none"`` (:func:`~.jobexport.exportJob`).

        Raises:
            ValueError: a request :func:`checkTrainRequest` refuses.
            RuntimeError: a job is running, or ``retrain`` without a finished run.
        """
        train = checkTrainRequest(volumeNode, segmentationNode, method, train)
        last = (self.exported, self.result, self.review, self.history) if self.result is not None else None
        self.exported = self._launch(
            lambda jobDir, initCheckpoint: exportJob(
                jobDir, volumeNode, segmentationNode, unlabeledVolumes=unlabeledVolumes, method=method, train=train,
                methodOptions=methodOptions, initCheckpoint=initCheckpoint, keepLargestIsland=keepLargestIsland),
            retrain)
        self._last = last
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
        if state in ("cancelled", "failed"):
            restored, note = self._restoreLastRound()
            why = "Training was cancelled." if state == "cancelled" else self.client.errorMessage()
            return Progress(state, events, fraction, progressText(progress), why + note, restored=restored)
        try:
            self._importResults()
        except Exception as err:  # noqa: BLE001 - reported to the user, scene left as it was
            restored, note = self._restoreLastRound()
            return Progress("failed", events, 1.0, progressText(progress),
                            f"Results could not be imported: {err}{note}", restored=restored)
        return Progress("done", events, 1.0, progressText(progress), imported=True)

    def _text(self, progress: dict) -> str:
        return self._withPreviews(progressText(progress))

    def _importResults(self) -> None:
        """The final result, into this round's preview nodes when there are some (it replaces the preview)."""
        self._adopt(importResults(self.scene, self.exported, into=self.preview))
        self.previews, self._last = {}, None
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

    def _reviewLastRound(self, previews):
        last, self._last = self._last, None
        preview = previews.get("image")
        if last is None or preview is None or self.result is not preview:
            return None
        exported, result, review, history = last
        if result.segmentationNode is None or result.segmentationNode.GetScene() is not self.scene:
            return None  # the user removed the last result: the preview is what there is
        current = self.review.currentSlice if self.review is not None else None
        self.exported, self.result, self.review, self.history = exported, result, review, history
        if current is not None and review is not None:  # the slice the user looks at stays current
            try:
                review.current = review.rowOfSlice(current["index"])
            except KeyError:
                pass
        self._setVisible(result.segmentationNode, True)
        if preview.confidenceNode is not None and result.confidenceNode is not None:  # in the views that show it
            composites = self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
            for composite in (composites.GetItemAsObject(i) for i in range(composites.GetNumberOfItems())):
                if composite.GetForegroundVolumeID() == preview.confidenceNode.GetID():
                    composite.SetForegroundVolumeID(result.confidenceNode.GetID())
        return set()

    def _adopt(self, result: ImportedResult, keepSlice: bool = False) -> None:
        """Make ``result`` the one reviewed (the pseudo-labels of the one before hidden when they are other nodes);
        ``keepSlice`` keeps the current review slice (a preview after another)."""
        current = self.review.currentSlice if keepSlice and self.review is not None else None
        if self.result is not None and self.result.segmentationNode is not result.segmentationNode:
            self._setVisible(self.result.segmentationNode, False)
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
