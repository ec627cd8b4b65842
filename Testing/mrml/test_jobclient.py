"""The engine process: progress parsing, cancel of the whole process tree, failures, and a whole
Session round against a fake engine (no torch needed)."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest

from SemiSegSlicerLib import jobclient, jobexport
from SemiSegSlicerLib.mrmlio import segmentsToArray
from SemiSegSlicerLib.session import Progress, Session, checkTrainRequest, progressText

import fakeengine
from mrmltesting import addSegmentation, addVolume, rotation, sceneNodes, segmentationSnapshot


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _waitFor(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def engine(tmp_path):
    return fakeengine.install(tmp_path / "fake")


@pytest.fixture
def jobDir(tmp_path):
    path = tmp_path / "job"
    path.mkdir()
    (path / "job.json").write_text(json.dumps({"format_version": 1, "image": "image.nrrd", "labels": "labels.nrrd",
                                               "method": "unimatch", "run_dir": "run"}))
    return path


@pytest.fixture
def scene_with_labels(scene):
    volume = addVolume(scene, np.random.default_rng(2).normal(size=(4, 10, 12)).astype(np.float32), (1.2, 0.9, 4.0),
                       (1.0, 2.0, 3.0), rotation(35, "z"), name="scan")
    mask = np.zeros((4, 10, 12), np.uint8)
    mask[1, 2:8, 3:9] = 1
    other = np.zeros_like(mask)
    other[2, 1:3, 1:3] = 1
    segmentation = addSegmentation(scene, volume, {"heart": ((1, 0.5, 0), mask), "lung": ((0, 0.5, 1), other)})
    return volume, segmentation


def test_command_is_an_argument_list():
    assert jobclient.engineCommand("/x/PythonSlicer", "/j") == [
        "/x/PythonSlicer",
        "-m",
        "semiseg",
        "train",
        "--job",
        "/j",
    ]


def test_progress_lines_are_parsed(engine, jobDir):
    fakeengine.configure(jobDir, mode="hang", obey_sigterm=True)
    client = jobclient.JobClient(sys.executable, jobDir, pythonPath=[engine])
    assert client.state() == "idle"
    client.start()
    with pytest.raises(RuntimeError):
        client.start()
    events = []
    assert _waitFor(lambda: events.extend(client.poll()) or len([e for e in events if e["event"] == "iteration"]) >= 3)
    assert events[0]["event"] == "start" and events[0]["method"] == "unimatch"
    assert events[1]["event"] == "child"
    assert client.lastProgress["iteration"] >= 3 and client.lastProgress["loss"] == 0.5
    assert client.state() == "running"
    client.cancel(graceSeconds=5)
    assert client.state() == "cancelled" and client.exitCode == 3
    assert client.status()["state"] == "cancelled"
    assert client.errorMessage() == ""


@pytest.mark.parametrize("obey", [True, False], ids=["engine-stops-on-sigterm", "tree-ignores-sigterm"])
def test_cancel_kills_the_whole_process_tree(engine, jobDir, obey):
    fakeengine.configure(jobDir, mode="hang", obey_sigterm=obey)
    client = jobclient.JobClient(sys.executable, jobDir, pythonPath=[engine])
    client.start()
    events = []
    assert _waitFor(lambda: events.extend(client.poll()) or any(e["event"] == "child" for e in events))
    child = next(e["pid"] for e in events if e["event"] == "child")
    leader = client.process.pid
    assert _alive(leader) and _alive(child)
    started = time.monotonic()
    client.cancel(graceSeconds=1.0)
    assert time.monotonic() - started < 10
    assert _waitFor(lambda: not _alive(child), 5.0), "the engine's child process survived cancel"
    assert not _alive(leader)
    assert (jobDir / "run" / "cancel").exists()  # the cooperative way is offered first
    assert client.state() == "cancelled"


def test_cancel_gives_the_engine_behind_a_launcher_the_whole_grace_period(engine, jobDir):
    """PythonSlicer dies at once on SIGTERM; the engine, its child, still gets to write its status and exit 3."""
    fakeengine.configure(jobDir, mode="hang", obey_sigterm=True, launcher=True, sigterm_seconds=2.0)
    client = jobclient.JobClient(sys.executable, jobDir, pythonPath=[engine])
    client.start()
    events = []
    assert _waitFor(lambda: events.extend(client.poll()) or any(e["event"] == "iteration" for e in events))
    started = time.monotonic()
    client.cancel(graceSeconds=15.0)
    assert 2.0 <= time.monotonic() - started < 12.0  # waited for the engine, not for the whole grace period
    assert client.status()["state"] == "cancelled", "the engine was killed before its orderly exit"
    assert client.state() == "cancelled"


def test_cancel_leaves_a_finished_job_alone(engine, jobDir, monkeypatch):
    fakeengine.configure(jobDir, mode="crash")
    client = jobclient.JobClient(sys.executable, jobDir, pythonPath=[engine])
    client.start()
    assert client.wait(30) == 1
    signals = []
    monkeypatch.setattr(jobclient, "_signalGroup", lambda group, sig: signals.append((group, sig)))
    client.cancel(graceSeconds=1.0)
    assert signals == [], "signals sent to the process group of a job that had ended (its ID may be reused)"
    assert not (jobDir / "run" / "cancel").exists()
    assert client.state() == "failed" and not client.cancelRequested


class _HiddenWindowRecorder:
    """Windows' STARTUPINFO and the Popen/run calls, recorded: the console programs' windows must stay hidden."""

    STARTF_USESHOWWINDOW, SW_HIDE, CREATE_NEW_PROCESS_GROUP = 1, 0, 0x200

    class STARTUPINFO:
        def __init__(self):
            self.dwFlags, self.wShowWindow = 0, 1  # SW_SHOWNORMAL unless told otherwise

    def __init__(self):
        self.calls = []

    def Popen(self, args, **kwargs):
        import io
        import types

        self.calls.append((args, kwargs))
        codes = iter([None])
        return types.SimpleNamespace(
            pid=4242,
            stdout=io.StringIO(""),
            stderr=io.StringIO(""),
            poll=lambda: next(codes, 3),
            wait=lambda timeout=None: 3,
        )

    def run(self, args, **kwargs):
        self.calls.append((args, kwargs))


def test_on_windows_no_console_window_shows(jobDir, monkeypatch):
    recorder = _HiddenWindowRecorder()
    monkeypatch.setattr(jobclient, "_WINDOWS", True)
    for name in ("STARTUPINFO", "STARTF_USESHOWWINDOW", "SW_HIDE", "CREATE_NEW_PROCESS_GROUP", "Popen", "run"):
        monkeypatch.setattr(jobclient.subprocess, name, getattr(recorder, name), raising=False)
    client = jobclient.JobClient("C:/Slicer/bin/PythonSlicer.exe", jobDir)
    client.start()
    client.cancel(graceSeconds=0.1)
    (engineArgs, engineOptions), (killArgs, killOptions) = recorder.calls
    assert engineArgs[1:4] == ["-m", "semiseg", "train"] and killArgs[0] == "taskkill"
    for options in (engineOptions, killOptions):  # the engine and taskkill: no console window
        info = options["startupinfo"]
        assert info.dwFlags & recorder.STARTF_USESHOWWINDOW and info.wShowWindow == recorder.SW_HIDE
    assert engineOptions["creationflags"] & recorder.CREATE_NEW_PROCESS_GROUP


def test_crash_gives_an_error_message(engine, jobDir):
    fakeengine.configure(jobDir, mode="crash")
    client = jobclient.JobClient(sys.executable, jobDir, pythonPath=[engine])
    client.start()
    assert client.wait(30) == 1
    events = client.poll()
    assert [e["event"] for e in events] == ["start", "error"]
    assert client.state() == "failed"
    message = client.errorMessage()
    assert "internal error" in message and "exit code 1" in message
    assert "fake crash in the trainer" in message  # status.json's message and stderr's tail
    assert "RuntimeError" in message


def test_bad_input_names_the_file(engine, jobDir):
    fakeengine.configure(jobDir, mode="bad_input")
    client = jobclient.JobClient(sys.executable, jobDir, pythonPath=[engine])
    client.start()
    assert client.wait(30) == 2
    assert "bad input" in client.errorMessage() and "labels.nrrd" in client.errorMessage()


def test_missing_python_is_an_oserror(jobDir):
    client = jobclient.JobClient(str(jobDir / "no-such-python"), jobDir)
    with pytest.raises(OSError):
        client.start()


def test_progress_text():
    assert (
        progressText({"iteration": 10, "iterations": 1000, "loss": 0.71, "dice": 0.834, "seconds_left": 125})
        == "Iteration 10/1000 · loss 0.710 · Dice 0.83 · ~2 min left"
    )
    assert progressText({}) == ""


@pytest.mark.parametrize(
    "progress,status,error",
    [
        (Progress("running", [], 0.5, "Iteration 9/20"), "Iteration 9/20", ""),
        (Progress("done", [], 1.0, "Iteration 20/20", imported=True), "Done. Iteration 20/20", ""),
        (
            Progress("failed", [], 0.4, "Iteration 8/20", "Out of memory.\nTraceback"),
            "Out of memory.",
            "Out of memory.\nTraceback",
        ),
        (Progress("cancelled", [], 0.4, "Iteration 8/20", "Training was cancelled."), "Training was cancelled.", ""),
    ],
)
def test_progress_status_line(progress, status, error):
    """The status line and error every front end shows, from one poll."""
    assert (progress.status, progress.error, progress.percent) == (status, error, round(100 * progress.fraction, 1))


def test_train_request_is_checked_once_for_every_front_end():
    volume, segmentation = object(), object()
    assert checkTrainRequest(volume, segmentation, "unimatch", {"iterations": "5", "size": 64.0, "device": "cpu"}) == {
        "iterations": 5,
        "size": 64,
        "device": "cpu",
    }
    for args, message in [
        ((None, segmentation, "unimatch"), "Select a volume"),
        ((volume, segmentation, "magic"), "unknown method"),
        ((volume, segmentation, "unimatch", {"iterations": 0}), "iterations must be >= 1"),
        ((volume, segmentation, "unimatch", {"size": 48 + 8}), "multiple of 16"),
        ((volume, segmentation, "unimatch", {"size": 0}), ">= 16"),
    ]:
        with pytest.raises(ValueError, match=message):
            checkTrainRequest(*args)


def test_engine_warnings_reach_the_progress():
    events = [
        {"event": "setup", "device": "cpu", "warning": "No GPU found: training runs on the CPU"},
        {"event": "iteration", "iteration": 1, "iterations": 10},
    ]
    assert Progress("running", events, 0.1, "").warnings == ["No GPU found: training runs on the CPU"]
    assert Progress("running", events[1:], 0.1, "").warnings == []


def _session(scene, tmp_path, engine, **fake):
    env = dict(os.environ, FAKE_ENGINE=json.dumps(fake))
    return Session(scene, sys.executable, str(tmp_path / "cache"), env=env, pythonPath=[engine])


def _pollUntilFinished(session, seconds=60.0, events=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress = session.poll()
        if events is not None:
            events.extend(progress.events)
        if progress.state != "running":
            return progress
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_session_round_with_a_fake_engine(scene, scene_with_labels, engine, tmp_path):
    volume, segmentation = scene_with_labels
    userBefore = segmentationSnapshot(segmentation)
    session = _session(scene, tmp_path, engine, mode="done")
    exported = session.start(volume, segmentation, method="semsim", train={"iterations": 3, "size": 32})
    assert exported.job["method"] == "semsim" and exported.job["init_checkpoint"] is None
    with pytest.raises(RuntimeError, match="already running"):
        session.start(volume, segmentation)
    events = []
    progress = _pollUntilFinished(session, events=events)
    assert progress.state == "done" and progress.imported and progress.fraction == 1.0
    assert "Dice 0.75" in progress.text
    assert [e["event"] for e in events] == ["start"] + ["iteration"] * 3 + ["validation", "predicted", "done"]
    assert list(session.client.otherOutput) == ["a line that is not JSON"]  # kept, not parsed
    assert session.poll().imported is False  # imported once
    pseudo = session.result.segmentationNode
    assert pseudo.GetID() != segmentation.GetID()
    assert segmentationSnapshot(segmentation) == userBefore
    assert [s["index"] for s in session.review.slices] == [0, 1, 2, 3]

    # review: the least confident slice is 0, where the fake engine filled in every label
    assert session.jumpToCurrent()["index"] == 0
    before = segmentsToArray(segmentation, exported.segmentIds, volume)
    assert session.acceptCurrent() == 0
    after = segmentsToArray(segmentation, exported.segmentIds, volume)
    np.testing.assert_array_equal(after[0], before.max(axis=0))
    np.testing.assert_array_equal(after[1:], before[1:])
    assert session.review.slices[0]["labeled"] is True
    assert session.undoAccept() == 0
    np.testing.assert_array_equal(segmentsToArray(segmentation, exported.segmentIds, volume), before)
    assert session.undoAccept() is None

    # retrain warm-starts from the last checkpoint
    again = session.start(volume, segmentation, retrain=True)
    assert again.job["init_checkpoint"] == os.path.join(exported.runDir, "checkpoint.pt")
    assert _pollUntilFinished(session).state == "done"
    scene.RemoveNode(session.result.segmentationNode)
    with pytest.raises(RuntimeError, match="removed"):
        session.acceptCurrent()


def test_session_cancel_leaves_the_scene_unchanged(scene, scene_with_labels, engine, tmp_path):
    volume, segmentation = scene_with_labels
    userBefore = segmentationSnapshot(segmentation)
    nodesBefore = sceneNodes(scene)
    session = _session(scene, tmp_path, engine, mode="hang", obey_sigterm=False)
    session.start(volume, segmentation)
    assert _waitFor(lambda: session.poll().text.startswith("Iteration"))
    session.cancel(graceSeconds=0.5)
    progress = _pollUntilFinished(session)
    assert progress.state == "cancelled" and "cancelled" in progress.message
    assert sceneNodes(scene) == nodesBefore
    assert segmentationSnapshot(segmentation) == userBefore
    assert session.result is None
    with pytest.raises(RuntimeError, match="no finished run"):
        session.start(volume, segmentation, retrain=True)


def test_session_crash_reports_and_leaves_the_scene_unchanged(scene, scene_with_labels, engine, tmp_path):
    volume, segmentation = scene_with_labels
    userBefore = segmentationSnapshot(segmentation)
    nodesBefore = sceneNodes(scene)
    session = _session(scene, tmp_path, engine, mode="crash")
    session.start(volume, segmentation)
    progress = _pollUntilFinished(session)
    assert progress.state == "failed"
    assert "exit code 1" in progress.message and "fake crash" in progress.message
    assert sceneNodes(scene) == nodesBefore
    assert segmentationSnapshot(segmentation) == userBefore
    assert session.result is None and not session.running


def test_session_start_failure_leaves_no_job_folder(scene, scene_with_labels, tmp_path):
    volume, segmentation = scene_with_labels
    session = Session(scene, str(tmp_path / "no-such-python"), str(tmp_path / "cache"))
    with pytest.raises(OSError):
        session.start(volume, segmentation)
    assert list((tmp_path / "cache").iterdir()) == []
    empty = addSegmentation(scene, volume, {})
    with pytest.raises(ValueError, match="no segment"):
        session.start(volume, empty)
    assert list((tmp_path / "cache").iterdir()) == [] and not session.running


def test_exported_job_round_trips_through_the_sidecar(scene, scene_with_labels, tmp_path):
    volume, segmentation = scene_with_labels
    exported = jobexport.exportJob(tmp_path / "j", volume, segmentation)
    assert jobexport.loadExportedJob(tmp_path / "j").segments == exported.segments
