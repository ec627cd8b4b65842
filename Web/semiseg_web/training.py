"""The page's training and review: starting and following a job, showing its results, stepping
through the review list, accepting slices. The half of the page's logic that drives
SemiSegSlicerLib's :class:`Session`; :class:`~.logic.SemiSegLogic` (volumes, views and labels) takes it in.

Everything that touches the scene runs on the server's event loop (trame's thread); the engine runs
out of process and is followed by an asyncio task that polls the session, as the Slicer module's
timer does. Request validation, the status line and review stepping are the session's.
"""

from __future__ import annotations

import asyncio
import logging

from SemiSegSlicerLib import resultimport
from SemiSegSlicerLib.cache import latestCheckpoint

from .plot import Curves
from .state import PlotState, ReviewRow

__all__ = ["TrainingAndReview", "POLL_SECONDS"]

logger = logging.getLogger(__name__)
POLL_SECONDS = 0.5


def _previewText(result) -> str:
    """The page's marker of a result: ``preview at iteration N — preliminary`` for a preview, else ""."""
    return resultimport.previewText(result.iteration) if result is not None and result.preliminary else ""


class TrainingAndReview:
    """Training and review actions of the page, mixed into :class:`~.logic.SemiSegLogic`.

    It uses the page's ``session`` (a :class:`Session`), ``study`` (a :class:`StudySession`), ``active`` (the
    one of the two whose results are shown), ``mode``, ``data`` (the typed state), ``server``, ``scene``,
    ``volume``, ``labels``, ``unlabeled`` and ``curves``, and from the views-and-labels half ``_render``,
    ``_refreshCurrentSlice``, ``_refreshLabeled``, ``_refreshVolumes``, ``_attachBrush``, ``_setVolume``,
    ``_volumeById``, ``_labelsFor``, ``_studyNameOf`` and ``_syncStudyPairs`` (and ``allVolumes``, ``studyIds``).
    """

    # -- training ---------------------------------------------------------------------------------

    def _trainSettings(self) -> dict:
        train = self.data.train
        return {"iterations": train.iterations, "size": train.size, "device": train.device}

    def train(self, retrain: bool = False) -> None:
        """Train on the shown volume (the others as unlabelled data); ``retrain`` after a study retrains the study."""
        if retrain and self.mode == "study":
            return self.trainStudy(retrain=True)
        if self.volume is None or self.labels is None:
            raise ValueError("open a volume first")
        if self.study.running:
            raise RuntimeError("a study job is running; cancel it first")
        train = self.data.train  # the request is checked by the session (SemiSegSlicerLib.session.checkTrainRequest)
        exported = self.session.start(
            self.volume,
            self.labels,
            unlabeledVolumes=self.unlabeled,
            method=train.method,
            train=self._trainSettings(),
            retrain=retrain,
            keepLargestIsland=self.data.train.keep_largest_island,
        )
        if self.mode == "study":
            self._hideStudyResults()
            self.data.review.has_results, self.data.review.rows, self.data.review.current = False, [], -1
        self.mode, self.data.study.active = "single", False
        self._started(f"Starting on {len(exported.labeledSlices)} labelled slices...")

    def _started(self, text: str, curves: bool = True) -> None:
        train = self.data.train
        if curves:
            self.curves = Curves()
            train.plot = PlotState()
        train.running, train.state, train.percent = True, "running", 0.0
        train.text = text
        self.data.message = ""
        self._follower = asyncio.ensure_future(self._follow())

    def _studyPairs(self) -> list:
        return [(volume, self._labelsFor(volume)) for volume in self.allVolumes if volume.GetID() in self.studyIds]

    def trainStudy(self, retrain: bool = False) -> None:
        """Train the volumes marked as part of the study, each with its own labels, as one job (StudySession).

        ``retrain`` warm-starts from the study's last model with every volume's labels as they are now (every
        accepted slice included): :meth:`StudySession.retrain` when the study's volumes are the same."""
        if self.session.running:
            raise RuntimeError("a training job is running; cancel it first")
        pairs = self._studyPairs()
        if len(pairs) < 2:
            raise ValueError("mark two volumes or more as part of the study (each with its own painted labels)")
        options = {"method": self.data.train.method, "train": self._trainSettings(),
                   "keepLargestIsland": self.data.train.keep_largest_island}
        same = [v.GetID() for v, _ in pairs] == [v.GetID() for v, _ in self.study.pairs]
        if retrain and same:
            study = self.study.retrain(**options)
        else:
            study = self.study.start(pairs, retrain=retrain, **options)
        if self.mode != "study":
            self._hideSingleResults()
            self.data.review.has_results, self.data.review.rows, self.data.review.current = False, [], -1
        self.mode, self.data.study.active = "study", True
        labelled = sum(len(volume.labeledSlices) for volume in study.volumes)
        self._started(f"Starting the study of {len(study.volumes)} volumes on {labelled} labelled slices...")

    def applyToMoreVolumes(self, nodeIds=None) -> None:
        """Segment volumes with the study's model, without training (``nodeIds``, by default every loaded volume
        outside the study that it has not segmented yet); their slices join the review list."""
        if self.session.running:
            raise RuntimeError("a training job is running; cancel it first")
        known = {e.volume.volumeNodeId for e in self.study.entries.values()} | self.studyIds
        volumes = ([self._volumeById(i) for i in nodeIds] if nodeIds is not None
                   else [v for v in self.allVolumes if v.GetID() not in known])
        if not volumes:
            raise ValueError("every loaded volume is in the study already: add volumes first")
        self.study.applyToVolumes(volumes)
        self.mode, self.data.study.active = "study", True
        self._started(f"Segmenting {', '.join(v.GetName() for v in volumes)} with the study's model...", curves=False)

    def _hideSingleResults(self) -> None:
        result = self.session.result
        if result is not None:
            pseudo = result.segmentationNode
            if pseudo is not None and pseudo.GetScene() is self.scene and pseudo.GetDisplayNode() is not None:
                pseudo.GetDisplayNode().SetVisibility(False)
            resultimport.hideConfidence(self.scene, result.confidenceNode)

    def _hideStudyResults(self, keep=None) -> None:
        for name, entry in self.study.entries.items():
            if name == keep or entry.result is None:
                continue
            pseudo = entry.result.segmentationNode
            if pseudo is not None and pseudo.GetScene() is self.scene and pseudo.GetDisplayNode() is not None:
                pseudo.GetDisplayNode().SetVisibility(False)
            resultimport.hideConfidence(self.scene, entry.result.confidenceNode)

    async def _follow(self) -> None:
        session = self.active
        while True:
            try:
                progress = session.poll()
            except Exception as err:  # noqa: BLE001 - the job is lost; say why
                logger.exception("poll failed")
                with self.server.state:
                    self.data.train.running, self.data.train.state, self.data.error = False, "failed", str(err)
                return
            with self.server.state:
                self._showProgress(progress)
            if progress.state != "running":
                return
            await asyncio.sleep(POLL_SECONDS)

    def _showProgress(self, progress) -> None:
        train = self.data.train
        if self.curves.add(progress.events):
            train.plot = self.curves.state()
        train.percent = progress.percent
        for warning in progress.warnings:
            self.data.message = warning
        if progress.status:
            train.text = progress.status
        train.state = progress.state
        if progress.previewed:
            self._showResults()
        if progress.state == "running":
            return
        train.running = False
        train.can_retrain = latestCheckpoint(self.active.lastRunDir) is not None
        if progress.imported:
            train.percent = 100.0
            self._showResults()
        elif progress.restored:  # a cancelled or failed round: the last results are back
            self._showResults()
        if self.mode == "study":
            self._syncStudyPairs()
            self._refreshVolumes()
        elif progress.error:
            self.data.error = progress.error

    def cancel(self):
        session = self.active

        async def stop():
            await asyncio.get_running_loop().run_in_executor(None, session.cancel, 10.0)

        return stop()

    # -- review -----------------------------------------------------------------------------------

    def _showResults(self) -> None:
        """The session's result in the page: a preview while training runs (marked preliminary), then the final one."""
        review, result = self.data.review, self.active.result
        preview = _previewText(result)
        if not (preview and review.preview_text):  # a later preview keeps the slice the user is looking at
            review.current = -1
            self.data.message = (
                f"Pseudo-labels so far ({preview}): they follow the training and the final result replaces them."
                if preview
                else "Pseudo-labels and confidence (dark = unsure) are shown. Click a slice in the review "
                "list, correct it if needed and accept it."
            )
        review.has_results, review.can_undo, review.preview_text = True, bool(self.active.history), preview
        self._refreshReviewRows()
        self._applyResultDisplay()
        if review.edit_pseudo:
            self._attachBrush()

    def _reviewVolumeName(self, entry: dict) -> str:
        """The name of the volume of a study's review entry, as the page lists it ("" for one volume)."""
        if "volume" not in entry:
            return ""
        volume = self.scene.GetNodeByID(self.study.entry(entry["volume"]).volume.volumeNodeId)
        return volume.GetName() if volume is not None else entry["volume"]

    def _refreshReviewRows(self) -> None:
        model = self.active.review
        self.data.review.rows = (
            [
                ReviewRow(
                    row=row,
                    index=e["index"],
                    volume=self._reviewVolumeName(e),
                    gain=100.0 * float(e["gain"]) if isinstance(e.get("gain"), (int, float)) else None,
                    confidence=float(e.get("confidence", 0.0)),
                    foreground=100.0 * float(e.get("foreground_fraction", 0.0)),
                    labeled=bool(e.get("labeled")),
                )
                for row, e in enumerate(model.slices)
            ]
            if model
            else []
        )
        self.data.review.current = model.current if model and self.data.review.current >= 0 else -1

    def _shownResult(self):
        """The result of the volume shown (None when it has none)."""
        if self.mode == "study":
            name = self._studyNameOf(self.volume)
            return self.study.entries[name].result if name is not None else None
        result = self.session.result
        exported = self.session.exported
        if result is None or exported is None or self.volume is None:
            return result
        return result if exported.volumeNodeId == self.volume.GetID() else None

    def _applyResultDisplay(self) -> None:
        if self.mode == "study":
            return self._applyStudyDisplay()
        result = self._shownResult()
        if result is None:
            if self.session.result is not None:
                self._hideSingleResults()
                self._render()
            return
        review = self.data.review
        pseudo = result.segmentationNode
        if pseudo is not None and pseudo.GetScene() is self.scene and pseudo.GetDisplayNode() is not None:
            pseudo.GetDisplayNode().SetVisibility(bool(review.show_pseudo))
        confidence = result.confidenceNode
        if confidence is not None and confidence.GetScene() is self.scene:
            if review.show_confidence:
                resultimport.showConfidence(self.scene, confidence, self.volume, float(review.opacity))
            else:
                resultimport.hideConfidence(self.scene, confidence)
        self._render()

    def _applyStudyDisplay(self) -> None:
        """The shown volume's results of the study (its pseudo-labels and confidence; the others' hidden), a
        preview's while the study trains. A volume without results stays in the views (the study shows its current
        review entry's volume when it imports a result or a preview and the views show none of its volumes)."""
        review = self.data.review
        name = self._studyNameOf(self.volume)
        self._hideStudyResults(keep=name)
        if name is None and self.volume is not None:
            self.app.display_manager.show_volume_in_slice_background(self.volume)
        if name is not None:
            result = self.study.entries[name].result
            if review.has_results:  # the marker says whether this volume's layers are a preview
                review.preview_text = _previewText(result)
            self.study.opacity = float(review.opacity)
            self.study.showVolume(name)
            pseudo = result.segmentationNode if result is not None else None
            if pseudo is not None and pseudo.GetScene() is self.scene and pseudo.GetDisplayNode() is not None:
                pseudo.GetDisplayNode().SetVisibility(bool(review.show_pseudo))
            if result is not None and not review.show_confidence:
                resultimport.hideConfidence(self.scene, result.confidenceNode)
        self._render()

    def selectReviewRow(self, row: int) -> None:
        self._showReviewSlice(self.active.selectReview(row=int(row)))

    def stepReview(self, step: int) -> None:
        """The next (``step`` > 0) or previous review slice; the first or last when none is selected in the page."""
        start = (0 if int(step) > 0 else -1) if self.data.review.current < 0 else None
        self._showReviewSlice(self.active.selectReview(row=start, step=int(step)))

    def _showReviewSlice(self, entry: dict | None) -> None:
        """Show the review entry just selected: its volume (a study's entry may be of another one) and slice."""
        if entry is not None:
            nodeId = (self.study.entry(entry["volume"]).volume.volumeNodeId if "volume" in entry
                      else self.session.exported.volumeNodeId)
            volume = self._volumeById(nodeId)
            if volume is not self.volume:
                self._setVolume(volume, resetViews=False)
                self.app.display_manager.reset_views()  # fit the views to that volume, then show the slice again
                self.active.jumpToCurrent()
                self._refreshVolumes()
        if self.mode == "study":
            self._applyStudyDisplay()  # the switches of the layers hold for the volume shown
        self.data.review.current = self.active.review.current
        self._refreshCurrentSlice()
        self._render()
        if entry is not None:
            where = f" of {self._reviewVolumeName(entry)}" if "volume" in entry else ""
            self.data.message = (
                f"Slice {entry['index']}{where}: confidence {entry.get('confidence', float('nan')):.3f}."
            )

    def acceptSlice(self) -> None:
        if self.active.running:
            raise RuntimeError("wait for training to end (or cancel it) before accepting slices")
        if self.mode == "study":
            self._lendLabelsToStudy()
        accepted = self.active.acceptCurrent()
        if self.mode == "study":
            name, index = accepted
            self._syncStudyPairs()
            self._afterReviewChange(
                f"Slice {index} of {self._reviewVolumeName({'volume': name})} copied from the pseudo-labels into "
                "its labels."
            )
        else:
            self._afterReviewChange(f"Slice {accepted} copied from the pseudo-labels into your labels.")

    def _lendLabelsToStudy(self) -> None:
        """A volume segmented later has no segmentation in the study: accepting makes one (StudySession looks for
        it among its pairs first). The page's labels of that volume (made when it was shown) go there, so that the
        page and the study share one segmentation per volume."""
        current = self.study.review.currentSlice if self.study.review is not None else None
        if current is None:
            return
        entry = self.study.entry(current["volume"])
        if entry.volume.segmentationNodeId:
            return
        volume = self._volumeById(entry.volume.volumeNodeId)
        if all(v.GetID() != volume.GetID() for v, _ in self.study.pairs):
            self.study.pairs.append((volume, self._labelsFor(volume)))

    def undoAccept(self) -> None:
        undone = self.active.undoAccept()
        if isinstance(undone, tuple):
            undone = f"{undone[1]} of {self._reviewVolumeName({'volume': undone[0]})}"
        self._afterReviewChange(f"Slice {undone} restored." if undone is not None else "Nothing to undo.")

    def _afterReviewChange(self, message: str) -> None:
        self.data.review.can_undo = bool(self.active.history)
        self._refreshReviewRows()
        self._refreshLabeled()
        self._refreshVolumes()
        self.data.message = message
        self._render()
