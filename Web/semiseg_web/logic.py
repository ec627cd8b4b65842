"""What the page does: connects the UI's signals to SemiSegSlicerLib's :class:`Session` and the scene.

One :class:`SemiSegLogic` per server: volumes, views and labels here; training and review in
:class:`~.training.TrainingAndReview`, which it takes in. Everything that touches the scene runs on
the server's event loop (trame's thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import vtk
from trame.app.file_upload import ClientFile
from trame_server.utils.typed_state import TypedState
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from undo_stack import UndoStack

from SemiSegSlicerLib import Session, labeledslices, review as reviewlib
from SemiSegSlicerLib.mrmlio import segmentsToArray, vtkMessagesOff, writeArrayAsVolume
from SemiSegSlicerLib.study import StudySession

from .painting import Brush, reattachEffectPipelines
from .plot import Curves
from .state import LAYOUTS, AppState, PlotState, SegmentItem, StudyState, VolumeItem
from .training import TrainingAndReview

__all__ = ["SemiSegLogic", "viewLayouts"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def quietViewConstruction():
    """VTK's warnings off while trame-slicer 2.0.0 builds views: each slice view observes its interactor's
    WindowResizeEvent, which VTK 9.6 answers with a deprecation warning (expected, from the pinned
    dependency, and harmless: the views resize). Everything else VTK says is shown as before."""
    with vtkMessagesOff():
        yield


def viewLayouts() -> dict[str, Layout]:
    """The page's view layouts (IDs of :data:`~.state.LAYOUTS`); the 3D view only in ``threed``."""
    axial = ViewLayoutDefinition.axial_view()
    coronal, sagittal = ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()
    return {
        "axial": Layout(LayoutDirection.Vertical, [axial]),
        "three": Layout(
            LayoutDirection.Horizontal,
            [axial, Layout(LayoutDirection.Vertical, [coronal, sagittal])],
            flex_sizes=["2", "1"],
        ),
        "threed": Layout(
            LayoutDirection.Horizontal,
            [axial, Layout(LayoutDirection.Vertical, [ViewLayoutDefinition.threed_view(), coronal, sagittal])],
            flex_sizes=["2", "1"],
        ),
    }


def _hexColor(rgb) -> str:
    return "#" + "".join(f"{int(round(255 * max(0.0, min(1.0, c)))):02x}" for c in rgb[:3])


_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".gz")


def _stem(name: str) -> str:
    """A volume's name without its file extension."""
    for suffix in _VOLUME_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _safeFileName(name: str) -> str:
    """A client's file name reduced to a plain name in one folder (no path, no traversal)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(str(name or "")).strip()) or "volume"
    return base.lstrip(".") or "volume"


class SemiSegLogic(TrainingAndReview):
    """Args:
    server: the trame server.
    slicerApp: trame-slicer's :class:`SlicerApp` (scene, views, segmentation editor).
    layoutManager: trame-slicer's layout manager of the page.
    cacheDir: where job folders are made.
    outDir: where "Save labels" writes.
    segmentNames: the segments of a new volume's labels.
    """

    def __init__(self, server, slicerApp, layoutManager, cacheDir: str, outDir: str, segmentNames=("Segment 1",)):
        self.server = server
        self.app = slicerApp
        self.scene = slicerApp.scene
        self.layoutManager = layoutManager
        self.typed = TypedState(server.state, AppState)
        self.data, self.name = self.typed.data, self.typed.name
        self.outDir = os.path.abspath(outDir)
        self.segmentNames = [name for name in segmentNames if name] or ["Segment 1"]
        import semiseg  # the engine package; only its location is needed here (no torch)

        self.session = Session(
            self.scene,
            sys.executable,
            cacheDir,
            env=self._engineEnvironment(),
            pythonPath=[str(Path(semiseg.__file__).resolve().parents[1])],
        )
        self.study = self._newStudySession()
        self.mode = "single"  # whose results the page shows: "single" (self.session) or "study" (self.study)
        self.volume = None  # the volume shown and painted
        self.labels = None  # the user's segmentation node of that volume
        self.allVolumes: list = []  # every loaded volume, in loading order
        self.labelsOf: dict = {}  # volume node ID -> the user's segmentation of that volume
        self.studyIds: set = set()  # node IDs of the volumes marked as part of the study
        self.curves = Curves()
        self._follower: asyncio.Task | None = None
        self._sliceObservation = None
        self._labelsDirty = False
        self.undoStack = UndoStack(undo_limit=30)
        self.brush = Brush(slicerApp.segmentation_editor, slicerApp.view_manager)
        slicerApp.segmentation_editor.set_undo_stack(self.undoStack)
        slicerApp.segmentation_editor.segmentation_modified.connect(self._onLabelsModified)
        for signal in self.undoStack.signals():
            signal.connect(self._onUndoChanged)

        for layoutId, layout in viewLayouts().items():
            layoutManager.register_layout(layoutId, layout, lazy_initialization=True)
        with quietViewConstruction():
            layoutManager.set_layout(self.data.layout)
        self.typed.bind_changes(
            {
                key: self._reported(action)
                for key, action in {
                    self.name.tool: self._onTool,
                    self.name.brush_size: self.brush.setSize,
                    self.name.layout: self._onLayout,
                    self.name.volume_rendering: self._onVolumeRendering,
                    self.name.review.show_pseudo: lambda _: self._applyResultDisplay(),
                    self.name.review.show_confidence: lambda _: self._applyResultDisplay(),
                    self.name.review.opacity: lambda _: self._applyResultDisplay(),
                    self.name.review.edit_pseudo: lambda _: self._attachBrush(),
                }.items()
            }
        )

    @staticmethod
    def _engineEnvironment() -> dict:
        env = dict(os.environ)
        for key in ("TRAME_ARGS", "SEMISEG_TOKEN"):
            env.pop(key, None)
        return env

    def _newStudySession(self) -> StudySession:
        return StudySession(self.scene, self.session.python, self.session.cacheDir, env=self.session.env,
                            pythonPath=self.session.pythonPath)

    @property
    def unlabeled(self) -> list:
        """The unlabelled data of a one-volume training: every other loaded volume."""
        return [node for node in self.allVolumes if node is not self.volume]

    @property
    def active(self):
        """The session whose results the page shows: the one-volume :class:`Session` or the :class:`StudySession`."""
        return self.study if self.mode == "study" else self.session

    def set_ui(self, ui) -> None:
        connections = {
            ui.load_files: self.loadClientFiles,
            ui.add_files: lambda files: self.loadClientFiles(files, add=True),
            ui.volume_clicked: self.selectVolume,
            ui.study_toggled: self.setInStudy,
            ui.train_study_clicked: self.trainStudy,
            ui.apply_clicked: self.applyToMoreVolumes,
            ui.save_clicked: self.saveLabels,
            ui.segment_clicked: self.selectSegment,
            ui.add_segment_clicked: self.addSegment,
            ui.previous_slice_clicked: lambda: self.stepSlice(-1),
            ui.next_slice_clicked: lambda: self.stepSlice(1),
            ui.mark_checked_clicked: self.markChecked,
            ui.undo_stroke_clicked: self.undoStack.undo,
            ui.redo_stroke_clicked: self.undoStack.redo,
            ui.train_clicked: lambda: self.train(retrain=False),
            ui.retrain_clicked: lambda: self.train(retrain=True),
            ui.cancel_clicked: self.cancel,
            ui.review_row_clicked: self.selectReviewRow,
            ui.review_step_clicked: self.stepReview,
            ui.accept_clicked: self.acceptSlice,
            ui.undo_accept_clicked: self.undoAccept,
        }
        for signal, action in connections.items():
            signal.connect(self._guarded(action))

    def _reported(self, action):
        """A state-change handler whose error becomes the page's error message."""

        def run(value):
            try:
                action(value)
            except Exception as err:  # noqa: BLE001 - shown to the user
                logger.exception("state change failed")
                self.data.error = str(err) or type(err).__name__

        return run

    def _guarded(self, action):
        """Run a user action; an error becomes the page's error message instead of a dead button."""

        async def run(*args):
            self.data.error = ""
            try:
                result = action(*args)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as err:  # noqa: BLE001 - shown to the user
                logger.exception("action failed")
                self.data.error = str(err) or type(err).__name__
            self.server.state.flush()

        return run

    # -- volumes ----------------------------------------------------------------------------------

    def loadClientFiles(self, files: list[dict], add: bool = False) -> None:
        """Volumes uploaded from the page: written to a private temporary folder, then opened (``add``: added to
        the volumes loaded, see :meth:`addPaths`)."""
        with tempfile.TemporaryDirectory(prefix="semiseg-upload-") as folder:
            paths = []
            for file in files or []:
                client = ClientFile(file)
                if client.is_empty:
                    continue
                path = Path(folder) / _safeFileName(client.name)
                path.write_bytes(client.content)
                paths.append(str(path))
            (self.addPaths if add and self.volume is not None else self.openPaths)(paths)

    @staticmethod
    def _files(paths) -> list[str]:
        files = []
        for path in paths:
            path = Path(path)
            files += sorted(str(p) for p in path.iterdir() if p.is_file()) if path.is_dir() else [str(path)]
        if not files:
            raise ValueError("no volume file was given")
        return files

    def _loadVolumes(self, files) -> list:
        volumes = self.app.io_manager.load_volumes(files)
        if not volumes:
            raise ValueError(f"no volume could be read from {', '.join(Path(f).name for f in files[:3])}")
        for node in volumes:
            node.SetName(_stem(node.GetName()))
        return list(volumes)

    def openPaths(self, paths) -> None:
        """Open volumes: the first is segmented, the others add unlabelled data. Replaces the scene."""
        files = self._files(paths)
        for session in (self.session, self.study):
            if session.running:
                session.cancel(5.0)
        self.brush.detach()
        self.scene.Clear(0)
        self.session = Session(
            self.scene,
            self.session.python,
            self.session.cacheDir,
            env=self.session.env,
            pythonPath=self.session.pythonPath,
        )
        self.study, self.mode = self._newStudySession(), "single"
        volumes = self._loadVolumes(files)
        self.volume, self.allVolumes, self.studyIds = volumes[0], volumes, set()
        self.labels = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{self.volume.GetName()} labels")
        self.labelsOf = {self.volume.GetID(): self.labels}
        self.labels.CreateDefaultDisplayNodes()
        self.labels.SetReferenceImageGeometryParameterFromVolumeNode(self.volume)
        self.brush.attach(self.labels, self.volume)
        for name in self.segmentNames:
            self.brush.addSegment(name)
        self.app.segmentation_editor.set_active_segment_id(self.app.segmentation_editor.get_nth_segment_id(0))
        self.undoStack.clear()
        self._showVolume()
        self.curves = Curves()
        self.data.volume_loaded = True
        self.data.train.running, self.data.train.state, self.data.train.percent, self.data.train.text = (
            False,
            "idle",
            0.0,
            "",
        )
        self.data.train.can_retrain = False
        self.data.train.plot = PlotState()
        self.data.review.has_results, self.data.review.rows, self.data.review.current = False, [], -1
        self.data.review.can_undo, self.data.review.edit_pseudo, self.data.review.preview_text = False, False, ""
        self.data.study = StudyState()
        self.data.message = f"Opened {self.volume.GetName()}: pick a segment, choose Paint and label a few slices."
        self._refreshSegments()
        self._refreshLabeled()
        self._refreshVolumes()

    def addPaths(self, paths) -> None:
        """Add volumes to those loaded (the scene, labels and results stay): unlabelled data, more volumes of a
        study (mark them and paint them), or volumes to segment with the study's model (Apply to more volumes)."""
        if self.volume is None:
            return self.openPaths(paths)
        volumes = self._loadVolumes(self._files(paths))
        self.allVolumes += volumes
        self.app.display_manager.show_volume_in_slice_background(self.volume)  # the shown volume stays shown
        self._applyResultDisplay()
        self._refreshVolumes()
        self.data.message = f"Added {', '.join(v.GetName() for v in volumes)}."

    # -- several volumes: the shown one, the study ------------------------------------------------

    def _volumeById(self, nodeId: str):
        node = next((v for v in self.allVolumes if v.GetID() == nodeId), None)
        if node is None or node.GetScene() is not self.scene:
            raise ValueError(f"no loaded volume {nodeId!r}")
        return node

    def _labelsFor(self, volume):
        """The user's segmentation of ``volume``; a new one, with the segments of the others, when it has none."""
        labels = self.labelsOf.get(volume.GetID())
        if labels is not None and labels.GetScene() is self.scene:
            return labels
        labels = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} labels")
        labels.CreateDefaultDisplayNodes()
        labels.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        template = next((s for s in self.labelsOf.values() if s is not None and s.GetScene() is self.scene), None)
        if template is not None:
            source = template.GetSegmentation()
            for n in range(source.GetNumberOfSegments()):
                segment = source.GetNthSegment(n)
                labels.GetSegmentation().AddEmptySegment(source.GetNthSegmentID(n), segment.GetName(),
                                                         segment.GetColor())
        self.labelsOf[volume.GetID()] = labels
        return labels

    def _setVolume(self, volume, resetViews: bool = True) -> None:
        """Show and paint ``volume`` (with its own labels)."""
        changed = volume is not self.volume
        self.volume, self.labels = volume, self._labelsFor(volume)
        self.data.active_volume = volume.GetID()
        if changed:
            self._attachBrush()
            if resetViews:
                self._showVolume()
            else:
                self.app.display_manager.show_volume_in_slice_background(volume)
        self._applyResultDisplay()
        self._refreshCurrentSlice()
        self._refreshLabeled()

    def selectVolume(self, nodeId: str) -> None:
        """Show volume ``nodeId`` in the views: its labels are painted; its results (a study's) are shown."""
        self._setVolume(self._volumeById(nodeId))
        self._refreshVolumes()
        self.data.message = f"Showing {self.volume.GetName()}."

    def setInStudy(self, nodeId: str, inStudy: bool) -> None:
        """Mark a loaded volume as part of the study (with its own labels, made now when it has none) or not."""
        volume = self._volumeById(nodeId)
        if inStudy:
            self._labelsFor(volume)
            self.studyIds.add(volume.GetID())
        else:
            self.studyIds.discard(volume.GetID())
        self._refreshVolumes()

    def _studyNameOf(self, volume) -> str | None:
        """The study's name of ``volume`` (its entry), None when the study has no result for it."""
        if volume is None:
            return None
        return next((name for name, e in self.study.entries.items() if e.volume.volumeNodeId == volume.GetID()), None)

    def _syncStudyPairs(self) -> None:
        """Segmentations the study made (a slice accepted in a volume segmented later) join the page's labels."""
        for volume, labels in self.study.pairs:
            if labels is not None:
                self.labelsOf.setdefault(volume.GetID(), labels)
                self.studyIds.add(volume.GetID())
        if self.volume is not None and self.labels is not self.labelsOf.get(self.volume.GetID()):
            self.labels = self.labelsOf[self.volume.GetID()]
            self._attachBrush()

    def _refreshVolumes(self) -> None:
        segmented = {e.volume.volumeNodeId for e in self.study.entries.values() if not e.trained}
        items = []
        for volume in self.allVolumes:
            if volume.GetScene() is not self.scene:
                continue
            labels = self.labelsOf.get(volume.GetID())
            count = 0
            if labels is not None and labels.GetScene() is self.scene:
                count = len(labeledslices.labeledSlicesOfSegmentation(labels, volume)[1])
            items.append(VolumeItem(node_id=volume.GetID(), name=volume.GetName(), in_study=volume.GetID() in
                                    self.studyIds, labeled=count, segmented=volume.GetID() in segmented))
        self.data.volumes = items
        self.data.active_volume = self.volume.GetID() if self.volume is not None else ""
        study = self.data.study
        study.count = sum(item.in_study for item in items)
        if self.volume is not None:
            others = len(items) - 1
            self.data.volume_name = self.volume.GetName() + (
                f" (study of {study.count}, {len(items)} loaded)" if study.count >= 2
                else f" (+{others} unlabelled)" if others else ""
            )
        known = {e.volume.volumeNodeId for e in self.study.entries.values()}
        study.can_apply = bool(self.study.study is not None and self.study.lastRunDir and any(
            item.node_id not in known and not item.in_study for item in items))
        study.text = (
            f"{study.count} volumes in the study: each is trained with its own labels."
            if study.count >= 2
            else "Tick two volumes or more (each with its own painted labels) to train them as one study."
        )

    def _showVolume(self) -> None:
        if self.volume is None:
            return
        self.app.display_manager.show_volume_in_slice_background(self.volume)
        self.app.display_manager.show_volume_in_slice_foreground(None)
        self._onVolumeRendering(self.data.volume_rendering)
        self.app.display_manager.reset_views()
        self._observeSlice()
        self._render()

    def _render(self) -> None:
        for view in self.app.view_manager.get_views():
            view.schedule_render()

    # -- layout and views -------------------------------------------------------------------------

    def _onLayout(self, layoutId: str) -> None:
        if layoutId not in LAYOUTS:
            return
        with quietViewConstruction():
            self.layoutManager.set_layout(layoutId)
        reattachEffectPipelines(self.app.segmentation_editor, self.app.view_manager)  # views built just now
        self.brush.setTool(self.brush.tool)
        if self.volume is not None:
            self._showVolume()
            self._applyResultDisplay()

    def _onVolumeRendering(self, enabled: bool) -> None:
        """Volume rendering in the 3D view: off by default (over a second per frame on a CPU)."""
        if self.volume is None:
            return
        rendering = self.app.volume_rendering
        if enabled:
            display = (
                rendering.get_vr_display_node(self.volume)
                if rendering.has_vr_display_node(self.volume)
                else rendering.create_display_node(self.volume)
            )
            display.SetVisibility(True)
        elif rendering.has_vr_display_node(self.volume):
            rendering.get_vr_display_node(self.volume).SetVisibility(False)
        self._render()

    def _redSliceNode(self):
        view = self.app.view_manager.get_view("Red")
        return view.get_view_node() if view is not None else None

    def _observeSlice(self) -> None:
        sliceNode = self._redSliceNode()
        if sliceNode is None or (self._sliceObservation and self._sliceObservation[0] is sliceNode):
            return
        if self._sliceObservation:
            self._sliceObservation[0].RemoveObserver(self._sliceObservation[1])
        tag = sliceNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda *_: self._refreshCurrentSlice())
        self._sliceObservation = (sliceNode, tag)
        self._refreshCurrentSlice()

    def _redAxisAndIndex(self):
        sliceNode = self._redSliceNode()
        if self.volume is None or sliceNode is None:
            return None
        return labeledslices.viewAxisAndIndex(self.volume, sliceNode)

    def _refreshCurrentSlice(self) -> None:
        where = self._redAxisAndIndex()
        count = self.volume.GetImageData().GetDimensions()[where[0]] if where else 0
        current = where[1] if where else -1
        if (self.data.current_slice, self.data.slice_count) != (current, count):
            with self.server.state:
                self.data.current_slice, self.data.slice_count = current, count

    def stepSlice(self, step: int) -> None:
        """Show the next (``step`` = 1) or previous slice of the volume in the Red view."""
        where = self._redAxisAndIndex()
        if where is None:
            raise ValueError("the Red view is oblique to the volume or outside it: reset the view first")
        axis, index = where
        index = min(max(0, index + step), self.volume.GetImageData().GetDimensions()[axis] - 1)
        self._redSliceNode().JumpSliceByOffsetting(*reviewlib.sliceCenterRas(self.volume, axis, index))
        self._refreshCurrentSlice()

    # -- labels -----------------------------------------------------------------------------------

    def _attachBrush(self) -> None:
        result = self._shownResult()
        pseudo = result.segmentationNode if result is not None else None
        target = pseudo if self.data.review.edit_pseudo and pseudo is not None else self.labels
        self.brush.attach(target, self.volume)
        self._refreshSegments()

    def _onTool(self, tool: str) -> None:
        self.brush.setTool(tool)

    def selectSegment(self, segmentId: str) -> None:
        self.brush.selectSegment(segmentId)
        self.data.active_segment_id = segmentId

    def addSegment(self) -> None:
        if self.labels is None:
            raise ValueError("open a volume first")
        name = (
            self.data.new_segment_name or ""
        ).strip() or f"Segment {self.labels.GetSegmentation().GetNumberOfSegments() + 1}"
        if self.brush.segmentationNode is not self.labels:
            self.data.review.edit_pseudo = False
            self.brush.attach(self.labels, self.volume)
        self.data.active_segment_id = self.brush.addSegment(name)
        added = self.labels.GetSegmentation().GetSegment(self.data.active_segment_id)
        for labels in self.labelsOf.values():  # every volume's labels keep the same segments (a study needs them)
            if labels is not self.labels and labels.GetScene() is self.scene:
                labels.GetSegmentation().AddEmptySegment(self.data.active_segment_id, name, added.GetColor())
        self.data.new_segment_name = ""
        self._refreshSegments()

    def _refreshSegments(self) -> None:
        editor = self.app.segmentation_editor
        self.data.segments = [
            SegmentItem(segment_id=sid, name=p.name, color=_hexColor(editor.get_segment(sid).GetColor()))
            for sid, p in editor.get_all_segment_properties().items()
        ]
        self.data.active_segment_id = editor.get_active_segment_id()

    def _onLabelsModified(self) -> None:
        """Painting changed a segmentation: recount the labelled slices once the stroke's events settle."""
        if self._labelsDirty:
            return
        self._labelsDirty = True

        def refresh():
            self._labelsDirty = False
            with self.server.state:
                self._refreshLabeled()

        try:
            asyncio.get_running_loop().call_later(0.2, refresh)
        except RuntimeError:  # no event loop (a script or a test): count now
            refresh()

    def _refreshLabeled(self) -> None:
        if self.labels is None or self.volume is None or self.labels.GetScene() is None:
            self.data.labeled_slices, self.data.labeled_text = [], ""
            return
        axis, slices = labeledslices.labeledSlicesOfSegmentation(self.labels, self.volume)
        self.data.labeled_slices = slices
        items = self.data.volumes
        for item in items:
            if item.node_id == self.volume.GetID() and item.labeled != len(slices):
                item.labeled = len(slices)
                self.data.volumes = items
        self.data.labeled_text = (
            labeledslices.labeledSlicesText(axis, slices)
            if slices
            else "No labelled slice yet: paint a few slices (unpainted slices are not background)."
        )

    def markChecked(self) -> None:
        """The slice in the Red view holds nothing to label: it counts as labelled, empty."""
        where = self._redAxisAndIndex()
        if where is None:
            raise ValueError("the Red view is oblique to the volume or outside it: reset the view first")
        labeledslices.markChecked(self.labels, *where)
        self.data.message = f"Slice {where[1]} marked as checked (labelled, empty)."
        self._refreshLabeled()

    def _onUndoChanged(self, *_) -> None:
        with self.server.state:  # also from strokes, outside any trame callback
            self.data.can_undo_stroke, self.data.can_redo_stroke = self.undoStack.can_undo(), self.undoStack.can_redo()

    def saveLabels(self) -> str:
        """Write the user's labels (a label map on the volume's grid) and their labelled slices to ``outDir``."""
        if self.labels is None:
            raise ValueError("open a volume first")
        segmentation = self.labels.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
        os.makedirs(self.outDir, exist_ok=True)
        stem = _safeFileName(_stem(self.volume.GetName()))
        path = os.path.join(self.outDir, f"{stem}_labels.nii.gz")
        writeArrayAsVolume(segmentsToArray(self.labels, ids, self.volume), self.volume, path)
        axis, slices = labeledslices.labeledSlicesOfSegmentation(self.labels, self.volume)
        info = {
            "labels": os.path.basename(path),
            "axis": axis,
            "labeled_slices": slices,
            "checked_slices": labeledslices.checkedSlices(self.labels)[1],
            "segments": [{"label": n + 1, "name": segmentation.GetNthSegment(n).GetName()} for n in range(len(ids))],
        }
        with open(os.path.join(self.outDir, f"{stem}_labels.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        self.data.saved_path = path
        self.data.message = f"Saved your labels to {path} on the server."
        return path
