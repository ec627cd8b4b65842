"""SemiSegSlicer.py's logic class, imported outside Slicer and driven on a real scene with the fake
engine (see modulesmoke.py). The GUI itself is covered by the module's ScriptedLoadableModuleTest,
which runs inside a real Slicer (docs/SLICER.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from semiseg.contract import METHOD_LABELS

import fakeengine
from mrmltesting import HERE


def test_module_logic_round(tmp_path):
    fake = fakeengine.install(tmp_path / "fake")
    completed = subprocess.run([sys.executable, str(HERE / "modulesmoke.py"), str(fake), str(tmp_path / "cache")],
                               cwd=HERE, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["python"] == sys.executable or Path(seen["python"]).name.startswith("PythonSlicer")
    assert seen["cacheDir"] == str(tmp_path / "cache" / "SemiSegSlicer")
    assert seen["summary"] == "Labelled slices along K: 2, 4"
    assert seen["job"]["method"] == "unimatch" and seen["job"]["labeled_slices"] == [4] and seen["job"]["axis"] == 2
    assert seen["job"]["train"] == {"iterations": 3, "size": 64, "device": "cpu"}
    assert seen["job"]["keep_largest_island"] == "auto"  # the parameter node's Keep largest island
    assert seen["runningAfterStart"] is True
    assert seen["state"] == "done", seen["message"]
    # the loss and validation Dice of the fake engine's three iterations, in the scene's plot nodes
    assert seen["curves"]["loss"] == [[1.0, 1.0], [2.0, 0.5], [3.0, 1.0 / 3]] and seen["curves"]["dice"] == [
        [3.0, 0.75]
    ]
    assert seen["curves"]["inScene"] and seen["curves"]["viewShowsChart"]
    assert seen["reviewLength"] == 5 and seen["canRetrain"] is True
    assert (seen["row"], seen["nextRow"]) == (1, 2)
    assert seen["accepted"] == 2 and seen["canUndo"] is True and seen["undone"] == 2
    assert seen["hidden"] == [None, None, None] or seen["hidden"] == ["", "", ""]
    assert seen["shown"] == [True, True, True] and abs(seen["opacity"] - 0.6) < 1e-9
    assert seen["cleared"][0] == 1 and seen["canRetrainAfterClear"] is False
    assert {"inputVolume", "segmentation", "method", "iterations", "size", "device"} <= set(seen["parameterFields"])
    assert seen["methods"] == [
        [value, label] for value, label in METHOD_LABELS.items()
    ]  # the engine's catalogue, in order
