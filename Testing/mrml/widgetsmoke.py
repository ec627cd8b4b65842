"""Drive SemiSegSlicer.py's widget and self-test outside Slicer, on a real MRML scene.

Run as a script (``python widgetsmoke.py FAKE_ENGINE_DIR CACHE_DIR``) by test_module_widget.py, in its own
process, because it sets ``slicer.mrmlScene`` and ``slicer.app``. Besides the stand-ins of
:mod:`modulesmoke` (``qt``, ``slicer.i18n``, the parameter node wrapper, ``ScriptedLoadableModule``,
``slicer.app``), the widgets of the .ui and Slicer's dialogs and effect factory, which exist only in the
application, are :class:`Recorder` objects that note every call. Prints one JSON object with what it saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import types
import unittest

import numpy as np

from SemiSegSlicerLib.review import ReviewModel
from SemiSegSlicerLib.session import Progress

from modulesmoke import ModuleTest, Signal, installStandIns
from mrmltesting import MODULE_DIR, SceneSetup, addSegmentation, addVolume, slicer


class Recorder:
    """Any attribute is another recorder; any call is noted in the shared ``calls`` list as (path, args)."""

    def __init__(self, path="ui", calls=None):
        self._path, self._calls = path, [] if calls is None else calls

    def __getattr__(self, name):
        child = Recorder(f"{self._path}.{name}", self._calls)
        object.__setattr__(self, name, child)
        return child

    def __call__(self, *args, **kwargs):
        self._calls.append((self._path, args))
        return Recorder(f"{self._path}()", self._calls)

    def called(self, path):
        return sum(1 for p, _ in self._calls if p == path)


class EffectFactory:
    """``qSlicerSegmentEditorEffectFactory.instance()``: PythonQt's ``connect(signature, slot)``."""

    def __init__(self):
        self.signals = {}

    def connect(self, signature, slot):
        self.signals.setdefault(signature, Signal()).connect(slot)

    def disconnect(self, signature, slot):
        self.signals[signature].disconnect(slot)

    def emit(self, signature, *args):
        self.signals.get(signature, Signal()).emit(*args)


def _parameterNodeWrapper(cls):
    """The wrapper as far as the widget uses it: typed fields with their defaults, GUI binding, observers."""

    class Wrapped(cls):
        def __init__(self, node=None):
            for name in cls.__annotations__:
                setattr(self, name, getattr(cls, name, None))

        def connectGui(self, ui):
            return "gui-tag"

        def disconnectGui(self, tag):
            pass

        def AddObserver(self, event, method, priority=0.0):
            return 1

        def RemoveObserver(self, tag):
            pass

    Wrapped.__annotations__ = cls.__annotations__
    return Wrapped


class ModuleWidget:
    def __init__(self, parent=None):
        self.parent = types.SimpleNamespace(isEntered=True)
        self.layout = Recorder("layout")

    def setup(self):
        pass

    def resourcePath(self, name):
        return str(MODULE_DIR / "Resources" / name)


def installWidgetStandIns(scene, cacheDir, ui, factory, dialogs):
    installStandIns(scene, cacheDir)
    slicer.parameterNodeWrapper.parameterNodeWrapper = _parameterNodeWrapper
    slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget = ModuleWidget
    slicer.ScriptedLoadableModule.ScriptedLoadableModuleLogic.getParameterNode = lambda self: None
    slicer.qSlicerSegmentEditorEffectFactory = types.SimpleNamespace(instance=lambda: factory)
    slicer.util.loadUI = lambda path: Recorder("uiWidget", ui._calls)
    slicer.util.childWidgetVariables = lambda widget: ui

    @contextlib.contextmanager
    def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as err:  # noqa: BLE001 - shown to the user in Slicer
            dialogs.append(("error", f"{message} {err}"))

    slicer.util.tryWithErrorDisplay = tryWithErrorDisplay


def widgetChecks(module, scene, ui, factory, dialogs) -> dict:
    seen = {}
    rng = np.random.default_rng(0)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "a label map, first in the scene")
    volume = addVolume(scene, rng.normal(size=(4, 8, 9)).astype(np.float32), name="scan")
    segmentation = addSegmentation(scene, volume, {"tumour": ((1, 0, 0), np.zeros((4, 8, 9), np.uint8))})

    widget = module.SemiSegSlicerWidget()
    widget.setup()
    seen["inputVolume"] = widget._parameterNode.inputVolume.GetName()
    seen["labelmap"] = labelmap.GetName()
    seen["segmentation"] = widget._parameterNode.segmentation.GetID() == segmentation.GetID()
    # The study section (several scans): its buttons add the inputs as a pair, once, and clear the pairs.
    seen["studyButtons"] = len(widget.studyButtons)
    add, _train, clear, _apply = widget.studyButtons
    add.clicked.emit()
    add.clicked.emit()
    seen["studyPairs"] = [(v.GetName(), s.GetName()) for v, s in widget._studyPairs]
    seen["studyLabel"] = widget.studyLabel.text
    clear.clicked.emit()
    seen["studyPairsCleared"] = len(widget._studyPairs)
    factory.emit("effectRegistered(QString)", "A late effect")
    seen["effectListUpdates"] = ui.called("ui.segmentEditorWidget.updateEffectList")
    widget.exit()
    seen["removeViewObservationsOnExit"] = ui.called("ui.segmentEditorWidget.removeViewObservations")
    widget.onSceneStartClose(scene, None)
    seen["removeViewObservationsOnClose"] = ui.called("ui.segmentEditorWidget.removeViewObservations")

    # A warning dialog runs Qt's event loop: the timer's ticks there must not poll again.
    polls, activeInDialog = [], []
    warning = "No GPU found: training runs on the CPU"

    def poll():
        polls.append(1)
        events = [{"event": "setup", "warning": warning}] if len(polls) == 1 else []
        return Progress("running", events, 0.1, "Iteration 1/10")

    def warningDisplay(text, windowTitle=None, **kwargs):
        dialogs.append(("warning", text))
        activeInDialog.append(widget._timer.isActive())
        for _ in range(3):
            widget._timer.tick()

    slicer.util.warningDisplay = warningDisplay
    widget.logic.poll = poll
    widget._timer.start()
    widget._timer.tick()
    seen["polls"], seen["timerActiveInDialog"] = len(polls), activeInDialog
    seen["warnings"] = [text for kind, text in dialogs if kind == "warning"]
    seen["timerActiveAfter"] = widget._timer.isActive()

    # A preview while training runs: the review table follows it and the status line says it is preliminary.
    review = ReviewModel({"axis": 2, "slices": [{"index": 3, "confidence": 0.4}, {"index": 1, "confidence": 0.6}]})
    widget.logic.session = types.SimpleNamespace(running=True, result=None, review=review)
    text = "Iteration 10/20 · preview at iteration 10 — preliminary"
    rows = ui.called("ui.reviewTable.setRowCount")
    seen["runningWithoutPreview"] = widget.showProgress(Progress("running", [], 0.5, "Iteration 9/20"))
    seen["tableUpdatesWithoutPreview"] = ui.called("ui.reviewTable.setRowCount") - rows
    seen["runningWithPreview"] = widget.showProgress(Progress("running", [], 0.5, text, previewed=True))
    seen["tableUpdatesWithPreview"] = ui.called("ui.reviewTable.setRowCount") - rows
    seen["tableRows"] = [args for path, args in ui._calls if path == "ui.reviewTable.setRowCount"][-1]
    seen["statusWithPreview"] = widget.ui.statusLabel.text

    # Leaving Slicer: a job that ended is not cancelled (its process group ID may be reused).
    cancels = []
    widget.logic.cancel = lambda graceSeconds=10.0: cancels.append(graceSeconds)
    widget.logic.session = types.SimpleNamespace(running=False)
    widget.cleanup()
    seen["cancelsOfAnEndedJob"] = len(cancels)
    seen["effectSlotsAfterCleanup"] = len(factory.signals["effectRegistered(QString)"].slots)
    widget.logic.session = types.SimpleNamespace(running=True)
    widget.cleanup()
    seen["cancelsOfARunningJob"] = len(cancels)
    seen["errors"] = [text for kind, text in dialogs if kind == "error"]
    return seen


def jobFolders(cacheDir):
    folder = os.path.join(cacheDir, "SemiSegSlicer")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def selfTestChecks(module, scene, fakeEngineDir, cacheDir) -> dict:
    """The module's self-test: skipped without torch/MONAI; its job folder removed when the round fails."""
    seen = {}
    logic = module.SemiSegSlicerLogic
    runner = unittest.TextTestRunner(stream=open(os.devnull, "w"))

    logic.missingDependencies = staticmethod(lambda: ["torch", "monai"])
    result = runner.run(module.SemiSegSlicerTest("test_SemiSegSlicer_round"))
    seen["skipped"] = [reason for _, reason in result.skipped]
    seen["failuresWithoutTorch"] = len(result.failures) + len(result.errors)
    module.SemiSegSlicerTest().runTest()  # Reload and Test: no exception, the skip is reported
    seen["jobsWithoutTorch"] = jobFolders(cacheDir)

    logic.missingDependencies = staticmethod(lambda: [])
    logic.enginePythonPath = staticmethod(lambda: [fakeEngineDir])
    os.environ["FAKE_ENGINE"] = json.dumps({"mode": "crash"})

    def syntheticInputs(self):  # slicer.util's array helpers are not in the slicer-core wheel
        mask = np.zeros((12, 32, 32), np.uint8)
        mask[[2, 9], 10:20, 10:20] = 1
        volume = addVolume(scene, np.random.default_rng(1).normal(size=mask.shape).astype(np.float32), name="synthetic")
        segmentation = addSegmentation(scene, volume, {"disc": ((1.0, 0.8, 0.2), mask)})
        return volume, segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)

    module.SemiSegSlicerTest.syntheticInputs = syntheticInputs
    result = runner.run(module.SemiSegSlicerTest("test_SemiSegSlicer_round"))
    seen["failuresOfACrashedRound"] = [str(err)[-300:] for _, err in result.failures + result.errors]
    seen["jobsAfterACrashedRound"] = jobFolders(cacheDir)
    return seen


def packagingChecks(module, folder) -> dict:
    """``installDependencies``: ``slicer.packaging.pip_ensure`` on Slicer >= 5.12, where ``import slicer`` does not
    import that submodule; ``slicer.util.pip_install`` of what is missing on 5.10."""
    seen, calls = {}, []
    requirements = os.path.join(folder, "requirements.txt")
    os.makedirs(folder, exist_ok=True)
    with open(requirements, "w", encoding="utf-8") as f:
        f.write("# a comment\nnumpy>=1.0\nsemiseg-package-that-is-not-installed>=1.0\n")
    packaging = types.ModuleType("slicer.packaging")  # in sys.modules only, as after Slicer's start-up
    packaging.load_requirements = lambda path: ["requirements of " + os.path.basename(path)]
    packaging.pip_ensure = lambda requirements, **kwargs: calls.append(("pip_ensure", requirements, kwargs))
    slicer.util.pip_install = lambda requirements: calls.append(("pip_install", requirements, {}))
    logic = module.SemiSegSlicerLogic()
    sys.modules["slicer.packaging"] = packaging
    try:
        seen["attributeBefore"] = hasattr(slicer, "packaging")
        logic.installDependencies(requirements, askConfirmation=False)
    finally:
        del sys.modules["slicer.packaging"]
        if hasattr(slicer, "packaging"):
            del slicer.packaging
    seen["slicer512"] = calls[:]
    calls.clear()
    logic.installDependencies(requirements, askConfirmation=False)  # Slicer 5.10: no slicer.packaging
    seen["slicer510"] = calls[:]
    return seen


def main(fakeEngineDir: str, cacheDir: str) -> dict:
    setup = SceneSetup()
    ui, factory, dialogs = Recorder(), EffectFactory(), []
    installWidgetStandIns(setup.scene, cacheDir, ui, factory, dialogs)
    import SemiSegSlicer as module

    assert module.SemiSegSlicerTest.__mro__[1] is ModuleTest
    return {**widgetChecks(module, setup.scene, ui, factory, dialogs),
            **selfTestChecks(module, setup.scene, fakeEngineDir, cacheDir),
            **packagingChecks(module, os.path.join(cacheDir, "packaging"))}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
