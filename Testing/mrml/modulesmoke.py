"""Drive SemiSegSlicer.py's logic outside Slicer, on a real MRML scene, with the fake engine.

Run as a script (``python modulesmoke.py FAKE_ENGINE_DIR CACHE_DIR``) by test_module_logic.py, in its own
process, because it sets ``slicer.mrmlScene`` and ``slicer.app``. Stand-ins replace only what exists
solely inside the Slicer application: ``qt``, ``slicer.i18n``, ``slicer.parameterNodeWrapper``,
``slicer.ScriptedLoadableModule`` and ``slicer.app``. The MRML classes, ``slicer.util`` and
SemiSegSlicerLib are the real ones. Prints one JSON object with what it saw.
"""

from __future__ import annotations

import json
import os
import sys
import types
import unittest

import numpy as np

from mrmltesting import SceneSetup, addSegmentation, addVolume, slicer


class _Environment:
    def __init__(self, values):
        self._values = dict(values)

    def keys(self):
        return list(self._values)

    def value(self, key):
        return self._values[key]


class Signal:
    """A Qt signal: ``connect``, ``disconnect``, ``emit``."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot):
        self.slots.remove(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args)


class Timer:
    """``qt.QTimer``: ``tick()`` fires ``timeout`` as Qt's event loop would, only while the timer is active."""

    def __init__(self):
        self.timeout = Signal()
        self.active = False

    def setInterval(self, milliseconds):
        self.interval = milliseconds

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def tick(self):
        if self.active:
            self.timeout.emit()


class Widget:
    """A ``qt``/``ctk`` widget or layout the module makes itself (not from the .ui): properties are attributes,
    ``clicked`` a :class:`Signal`, ``addRow`` notes its widgets in ``rows``."""

    def __init__(self, *args):
        self.clicked = Signal()
        self.rows = []

    def addRow(self, *widgets):
        self.rows.append(widgets)


class ModuleTest(unittest.TestCase):
    """``ScriptedLoadableModuleTest``: a ``unittest.TestCase`` with ``delayDisplay``."""

    def delayDisplay(self, message, msec=None):
        print(message, file=sys.stderr)


def installStandIns(scene, cacheDir):
    """Put stand-ins for what exists only inside the Slicer application in ``sys.modules`` and ``slicer``."""
    qt = types.ModuleType("qt")
    qt.QTimer, qt.QTableWidgetItem = Timer, str  # a table item: its text
    qt.QLabel = qt.QPushButton = qt.QFormLayout = Widget
    ctk = types.ModuleType("ctk")
    ctk.ctkCollapsibleButton = Widget
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = lambda choices: ("Choice", tuple(choices))
    wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        setattr(scripted, name, type(name, (), {"__init__": lambda self, *args: None}))
    scripted.ScriptedLoadableModuleTest = ModuleTest
    sys.modules.update({"qt": qt, "ctk": ctk, "slicer.i18n": i18n, "slicer.parameterNodeWrapper": wrapper,
                        "slicer.ScriptedLoadableModule": scripted})
    slicer.i18n, slicer.parameterNodeWrapper, slicer.ScriptedLoadableModule = i18n, wrapper, scripted
    slicer.mrmlScene = scene
    slicer.app = types.SimpleNamespace(cachePath=cacheDir, processEvents=lambda: None,
                                       startupEnvironment=lambda: _Environment(os.environ))


def main(fakeEngineDir: str, cacheDir: str) -> dict:
    setup = SceneSetup()
    scene = setup.scene
    installStandIns(scene, cacheDir)
    import SemiSegSlicer as module

    seen = {}
    rng = np.random.default_rng(3)
    volume = addVolume(scene, rng.normal(size=(5, 16, 18)).astype(np.float32), name="scan")
    mask = np.zeros((5, 16, 18), np.uint8)
    mask[2, 4:12, 5:14] = 1
    segmentation = addSegmentation(scene, volume, {"tumour": ((1, 0, 0), mask)})

    logic = module.SemiSegSlicerLogic()
    seen["python"] = logic.pythonExecutable()
    seen["enginePath"] = module.SemiSegSlicerLogic.enginePythonPath()
    seen["missing"] = logic.missingDependencies()
    seen["cacheDir"] = logic.cacheDir()
    logic.enginePythonPath = lambda: [fakeEngineDir]  # the fake engine instead of the real one
    os.environ["FAKE_ENGINE"] = json.dumps({"mode": "done"})

    red = scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    red.JumpSliceByOffsetting(0.0, 0.0, 4.0)
    seen["summary"] = logic.markSliceChecked(volume, segmentation)
    parameters = types.SimpleNamespace(inputVolume=volume, segmentation=segmentation, method=module.Method.UNIMATCH,
                                       iterations=3, size=64, device="cpu", keepLargestIsland="auto")
    exported = logic.startTraining(parameters)
    seen["job"] = exported.job
    seen["runningAfterStart"] = logic.running
    progress = logic.waitForJob(120, processEvents=True)
    seen["state"], seen["message"], seen["text"] = progress.state, progress.message, progress.text
    plot = logic.curvePlot
    seen["curves"] = {
        "loss": plot.points("loss"),
        "dice": plot.points("dice"),
        "inScene": plot.chartNode.GetScene() is slicer.mrmlScene,
        "viewShowsChart": plot.viewNode.GetPlotChartNodeID() == plot.chartNode.GetID(),
    }
    seen["reviewLength"] = len(logic.review) if logic.review else 0
    seen["canRetrain"] = logic.canRetrain
    seen["row"] = logic.selectReviewSlice(row=1)
    seen["nextRow"] = logic.selectReviewSlice(step=1)
    seen["accepted"] = logic.acceptCurrentSlice()
    seen["canUndo"] = logic.canUndo
    seen["undone"] = logic.undoAccept()
    confidence = logic.session.result.confidenceNode
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    logic.applyConfidenceDisplay(False, 0.4)
    seen["hidden"] = [composites.GetItemAsObject(i).GetForegroundVolumeID() for i in range(3)]
    logic.applyConfidenceDisplay(True, 0.6)
    seen["shown"] = [composites.GetItemAsObject(i).GetForegroundVolumeID() == confidence.GetID() for i in range(3)]
    seen["opacity"] = composites.GetItemAsObject(0).GetForegroundOpacity()
    seen["cleared"] = list(logic.clearCache())
    seen["canRetrainAfterClear"] = logic.canRetrain
    seen["parameterFields"] = sorted(module.SemiSegSlicerParameterNode.__annotations__)
    seen["methods"] = [(m.value, m.label()) for m in module.Method]
    return seen


def studyMain(fakeEngineDir: str, cacheDir: str) -> dict:
    """The logic's study path: two (volume, segmentation) pairs, one training, the review across them, accept,
    retrain on the study's pairs, and "apply to more volumes"."""
    setup = SceneSetup()
    scene = setup.scene
    installStandIns(scene, cacheDir)
    import SemiSegSlicer as module

    seen = {}
    rng = np.random.default_rng(3)
    pairs = []
    for n, shape in enumerate(((5, 16, 18), (4, 12, 14))):
        volume = addVolume(scene, rng.normal(size=shape).astype(np.float32), origin=(60.0 * n, 0, 0), name=f"scan{n}")
        mask = np.zeros(shape, np.uint8)
        mask[2, 4:10, 5:12] = 1
        pairs.append((volume, addSegmentation(scene, volume, {"tumour": ((1, 0, 0), mask)}, name=f"labels{n}")))
    later = addVolume(scene, rng.normal(size=(3, 10, 10)).astype(np.float32), origin=(-60.0, 0, 0), name="later")
    logic = module.SemiSegSlicerLogic()
    logic.enginePythonPath = lambda: [fakeEngineDir]
    os.environ["FAKE_ENGINE"] = json.dumps({"mode": "done"})
    parameters = types.SimpleNamespace(method=module.Method.SUPERVISED, iterations=3, size=64, device="cpu",
                                       keepLargestIsland="none")
    exported = logic.startStudy(parameters, pairs)
    seen["volumes"] = [v["image"] for v in exported.job["volumes"]]
    seen["islands"] = exported.job["keep_largest_island"]
    seen["running"] = logic.running
    seen["state"] = logic.waitForJob(120).state
    seen["reviewVolumes"] = sorted({e["volume"] for e in logic.review.slices})
    seen["row"] = logic.selectReviewSlice(row=1)
    seen["background"] = scene.GetNodesByClass("vtkMRMLSliceCompositeNode").GetItemAsObject(0).GetBackgroundVolumeID()
    seen["secondVolume"] = pairs[1][0].GetID()
    seen["accepted"] = logic.acceptCurrentSlice()
    seen["canUndo"], seen["canRetrain"] = logic.canUndo, logic.canRetrain
    again = logic.startStudy(parameters, None, retrain=True)
    seen["retrainLabelled"] = [v.labeledSlices for v in again.volumes]
    seen["retrainState"] = logic.waitForJob(120).state
    logic.applyToMoreVolumes([later])
    seen["applyState"] = logic.waitForJob(120).state
    seen["reviewLength"] = len(logic.review)
    logic.applyConfidenceDisplay(True, 0.5)
    seen["opacity"] = scene.GetNodesByClass("vtkMRMLSliceCompositeNode").GetItemAsObject(0).GetForegroundOpacity()
    return seen


if __name__ == "__main__":
    if sys.argv[3:] == ["study"]:
        print(json.dumps(studyMain(sys.argv[1], sys.argv[2])))
    else:
        print(json.dumps(main(sys.argv[1], sys.argv[2])))
