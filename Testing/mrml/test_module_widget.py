"""SemiSegSlicer.py's widget and self-test, outside Slicer, on a real scene (see widgetsmoke.py): the
conventions of Slicer's own modules that the widget follows, and the self-test's skip and clean-up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import fakeengine
from mrmltesting import HERE


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("widget")
    fake = fakeengine.install(tmp_path / "fake")
    completed = subprocess.run([sys.executable, str(HERE / "widgetsmoke.py"), str(fake), str(tmp_path / "cache")],
                               cwd=HERE, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_default_input_volume_is_never_a_label_map(seen):
    assert seen["inputVolume"] == "scan" and seen["segmentation"]


def test_the_embedded_editor_follows_slicers_segment_editor_module(seen):
    assert seen["effectListUpdates"] == 1  # an effect registered later joins the editor
    assert seen["removeViewObservationsOnExit"] == 1
    assert seen["removeViewObservationsOnClose"] == 2
    assert seen["effectSlotsAfterCleanup"] == 0


def test_a_warning_dialog_does_not_make_the_poll_timer_re_enter(seen):
    assert seen["polls"] == 1, "the timer polled again while the dialog was open"
    assert seen["warnings"] == ["No GPU found: training runs on the CPU"]
    assert seen["timerActiveInDialog"] == [False]
    assert seen["timerActiveAfter"] is True  # the job still runs: polling resumes
    assert seen["errors"] == []


def test_a_preview_updates_the_review_table_while_training_runs(seen):
    assert seen["runningWithoutPreview"] is True and seen["tableUpdatesWithoutPreview"] == 0
    assert seen["runningWithPreview"] is True and seen["tableUpdatesWithPreview"] == 1
    assert seen["tableRows"] == [2]
    assert seen["statusWithPreview"] == "Iteration 10/20 · preview at iteration 10 — preliminary"


def test_leaving_slicer_cancels_only_a_running_job(seen):
    assert seen["cancelsOfAnEndedJob"] == 0
    assert seen["cancelsOfARunningJob"] == 1


def test_the_self_test_skips_without_torch_and_removes_its_jobs(seen):
    assert len(seen["skipped"]) == 1 and seen["failuresWithoutTorch"] == 0
    assert "torch and monai not installed" in seen["skipped"][0] and "Install dependencies" in seen["skipped"][0]
    assert seen["jobsWithoutTorch"] == []
    assert len(seen["failuresOfACrashedRound"]) == 1 and "failed" in seen["failuresOfACrashedRound"][0]
    assert seen["jobsAfterACrashedRound"] == [], "the self-test left its job folder in Slicer's cache"


def test_dependencies_are_installed_with_slicer_packaging_when_slicer_has_it(seen):
    assert seen["attributeBefore"] is False  # `import slicer` alone does not make slicer.packaging
    assert seen["slicer512"] == [["pip_ensure", ["requirements of requirements.txt"],
                                  {"requester": "SemiSegSlicer", "prompt_install": False}]]
    assert seen["slicer510"] == [["pip_install", ["semiseg-package-that-is-not-installed>=1.0"], {}]]


def test_the_study_section_adds_the_inputs_as_pairs(seen):
    assert seen["studyButtons"] == 4
    assert seen["studyPairs"] == [["scan", "segmentation"]] and seen["studyLabel"] == "scan + segmentation"
    assert seen["studyPairsCleared"] == 0
