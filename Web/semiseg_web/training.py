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


class TrainingAndReview:
    """Training and review actions of the page, mixed into :class:`~.logic.SemiSegLogic`.

    It uses the page's ``session`` (a :class:`Session`), ``data`` (the typed state), ``server``,
    ``scene``, ``volume``, ``labels``, ``unlabeled`` and ``curves``, and from the views-and-labels
    half ``_render``, ``_refreshCurrentSlice``, ``_refreshLabeled`` and ``_attachBrush``.
    """

    # -- training ---------------------------------------------------------------------------------

    def train(self, retrain: bool = False) -> None:
        if self.volume is None or self.labels is None:
            raise ValueError("open a volume first")
        train = self.data.train  # the request is checked by the session (SemiSegSlicerLib.session.checkTrainRequest)
        exported = self.session.start(
            self.volume,
            self.labels,
            unlabeledVolumes=self.unlabeled,
            method=train.method,
            train={"iterations": train.iterations, "size": train.size, "device": train.device},
            retrain=retrain,
        )
        self.curves = Curves()
        train.running, train.state, train.percent, train.plot = True, "running", 0.0, PlotState()
        train.text = f"Starting on {len(exported.labeledSlices)} labelled slices..."
        self.data.message = ""
        self._follower = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        while True:
            try:
                progress = self.session.poll()
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
        train.can_retrain = latestCheckpoint(self.session.lastRunDir) is not None
        if progress.imported:
            train.percent = 100.0
            self._showResults()
        elif progress.error:
            self.data.error = progress.error

    def cancel(self):
        async def stop():
            await asyncio.get_running_loop().run_in_executor(None, self.session.cancel, 10.0)

        return stop()

    # -- review -----------------------------------------------------------------------------------

    def _showResults(self) -> None:
        """The session's result in the page: a preview while training runs (marked preliminary), then the final one."""
        review, result = self.data.review, self.session.result
        preview = resultimport.previewText(result.iteration) if result.preliminary else ""
        if not (preview and review.preview_text):  # a later preview keeps the slice the user is looking at
            review.current = -1
            self.data.message = (
                f"Pseudo-labels so far ({preview}): they follow the training and the final result replaces them."
                if preview
                else "Pseudo-labels and confidence (dark = unsure) are shown. Click a slice in the review "
                "list, correct it if needed and accept it."
            )
        review.has_results, review.can_undo, review.preview_text = True, bool(self.session.history), preview
        self._refreshReviewRows()
        self._applyResultDisplay()
        if review.edit_pseudo:
            self._attachBrush()

    def _refreshReviewRows(self) -> None:
        model = self.session.review
        self.data.review.rows = (
            [
                ReviewRow(
                    row=row,
                    index=e["index"],
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

    def _applyResultDisplay(self) -> None:
        result = self.session.result
        if result is None:
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

    def selectReviewRow(self, row: int) -> None:
        self._showReviewSlice(self.session.selectReview(row=int(row)))

    def stepReview(self, step: int) -> None:
        """The next (``step`` > 0) or previous review slice; the first or last when none is selected in the page."""
        start = (0 if int(step) > 0 else -1) if self.data.review.current < 0 else None
        self._showReviewSlice(self.session.selectReview(row=start, step=int(step)))

    def _showReviewSlice(self, entry: dict | None) -> None:
        self.data.review.current = self.session.review.current
        self._refreshCurrentSlice()
        self._render()
        if entry is not None:
            self.data.message = f"Slice {entry['index']}: confidence {entry.get('confidence', float('nan')):.3f}."

    def acceptSlice(self) -> None:
        if self.session.running:
            raise RuntimeError("wait for training to end (or cancel it) before accepting slices")
        index = self.session.acceptCurrent()
        self._afterReviewChange(f"Slice {index} copied from the pseudo-labels into your labels.")

    def undoAccept(self) -> None:
        index = self.session.undoAccept()
        self._afterReviewChange(f"Slice {index} restored." if index is not None else "Nothing to undo.")

    def _afterReviewChange(self, message: str) -> None:
        self.data.review.can_undo = bool(self.session.history)
        self._refreshReviewRows()
        self._refreshLabeled()
        self.data.message = message
        self._render()
