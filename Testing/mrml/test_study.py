"""A study of several scans (issue 12, item 3): one format-2 job over two (volume, segmentation) pairs, every
volume's result imported into its own nodes, one review list across the volumes, accepting slices of each,
retraining on both, and segmenting a volume loaded later with the model; while a study trains, each volume's
previews in its nodes and in the review list, replaced by the final result. Against the fake engine (real files,
written in the engine's layout), on a real MRML scene."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from SemiSegSlicerLib import labeledslices, resultimport
from SemiSegSlicerLib.jobexport import exportStudyJob
from SemiSegSlicerLib.mrmlio import arrayFromVolume, readVolume, segmentsToArray
from SemiSegSlicerLib.review import StudyReview, reviewRowTexts
from SemiSegSlicerLib.study import StudySession

import fakeengine
from mrmltesting import (
    DATA,
    HERE,
    ROOT,
    addSegmentation,
    addVolume,
    cancelShowsTheLastResultsAgain,
    composites,
    fakeEngineSession,
    fileLabels,
    openGate,
    pollUntil,
    rotation,
    sceneNodes,
    segmentationSnapshot,
)

SHAPE_A = (6, 20, 24)  # K, J, I
SHAPE_B = (5, 16, 18)


@pytest.fixture
def engine(tmp_path):
    return fakeengine.install(tmp_path / "fake")


def _pair(scene, shape, name, painted, origin, colorOrder=False):
    volume = addVolume(scene, np.random.default_rng(len(name)).normal(size=shape).astype(np.float32),
                       (0.8, 0.9, 3.0), origin, rotation(20, "z"), name=name)
    heart = np.zeros(shape, np.uint8)
    heart[painted, 5:12, 6:14] = 1
    lung = np.zeros(shape, np.uint8)
    lung[painted, 1:4, 1:4] = 1
    segments = {"heart": ((1, 0.5, 0), heart), "lung": ((0, 0.5, 1), lung)}
    if colorOrder:  # the second segmentation lists its segments in another order: matched by name
        segments = dict(reversed(list(segments.items())))
    return volume, addSegmentation(scene, volume, segments, name=f"{name} labels")


_session = functools.partial(fakeEngineSession, StudySession)


@pytest.fixture
def study(scene):
    a = _pair(scene, SHAPE_A, "scanA", 2, (4.0, -3.0, 2.0))
    b = _pair(scene, SHAPE_B, "scanB", 3, (100.0, 50.0, -20.0), colorOrder=True)
    labeledslices.markChecked(b[1], 2, 0)  # a slice of scan B checked and found empty
    return a, b


def _finish(session, seconds=120.0):
    """Poll until the job ends; the last progress, with every event of the job in ``events``."""
    deadline, events = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        progress = session.poll()
        events += progress.events
        if progress.state != "running":
            progress.events = events
            return progress
        time.sleep(0.05)
    raise AssertionError("the job did not finish in time")


def test_study_export_writes_a_format_2_job(scene, study, tmp_path):
    (volumeA, userA), (volumeB, userB) = study
    exported = exportStudyJob(tmp_path / "job", [(volumeA, userA), (volumeB, userB)])
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["format_version"] == 2 and "image" not in job
    assert job["classes"] == ["background", "heart", "lung"]
    a, b = job["volumes"]
    assert a == {"image": "v01_scanA.nrrd", "labels": "v01_scanA_labels.nrrd", "labeled_slices": [], "axis": "auto"}
    assert b == {"image": "v02_scanB.nrrd", "labels": "v02_scanB_labels.nrrd", "labeled_slices": [0], "axis": 2}
    assert [v.labeledSlices for v in exported.volumes] == [[2], [0, 3]]
    # scan B's segments were listed lung first: its labels follow the study's classes (heart = 1, lung = 2)
    import SimpleITK as sitk

    labelsB = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "job" / b["labels"])))
    assert set(np.unique(labelsB[3])) == {0, 1, 2} and labelsB[3, 6, 7] == 1 and labelsB[3, 2, 2] == 2
    assert [s["name"] for s in exported.volume("v02_scanB").segments] == ["heart", "lung"]


def test_study_export_refuses_other_segment_names(scene, study, tmp_path):
    (volumeA, userA), (volumeB, userB) = study
    userB.GetSegmentation().GetNthSegment(0).SetName("liver")
    with pytest.raises(ValueError, match="same segment names"):
        exportStudyJob(tmp_path / "job", [(volumeA, userA), (volumeB, userB)])
    with pytest.raises(ValueError, match="twice"):
        exportStudyJob(tmp_path / "job2", [(volumeA, userA), (volumeA, None)])


def test_study_review_orders_across_volumes():
    review = StudyReview([
        ("a", {"axis": 2, "slices": [{"index": 1, "confidence": 0.5}, {"index": 0, "confidence": 0.7}]}),
        ("b", {"axis": 1, "slices": [{"index": 4, "confidence": 0.5}, {"index": 2, "confidence": 0.6},
                                     {"index": 0, "confidence": 0.5}]}),
    ])
    assert [(e["volume"], e["index"]) for e in review.slices] == [("a", 1), ("b", 0), ("b", 4), ("b", 2), ("a", 0)]
    assert review.currentSlice["volume"] == "a" and review.slices[1]["axis"] == 1
    review.select(3)
    review.addVolume("c", {"axis": 2, "slices": [{"index": 0, "confidence": 0.1}]})
    assert review.slices[0]["volume"] == "c" and review.currentSlice == {**review.slices[4]}
    assert (review.currentSlice["volume"], review.currentSlice["index"]) == ("b", 2)
    review.setLabeled("b", 2)
    assert review.slices[review.rowOfSlice("b", 2)]["labeled"] is True


def test_study_review_orders_by_expected_gain_across_volumes():
    """The engine's gains decide the order, whatever the confidence says; a list without gains follows."""
    review = StudyReview([
        ("a", {"axis": 2, "slices": [{"index": 0, "confidence": 0.9, "gain": 0.02},
                                     {"index": 1, "confidence": 0.3, "gain": 0.001}]}),
        ("b", {"axis": 2, "slices": [{"index": 0, "confidence": 0.99, "gain": 0.05},
                                     {"index": 1, "confidence": 0.5, "gain": 0.02}]}),
    ])
    assert [(e["volume"], e["index"]) for e in review.slices] == [("b", 0), ("a", 0), ("b", 1), ("a", 1)]
    review.addVolume("old", {"axis": 2, "slices": [{"index": 0, "confidence": 0.1}]})
    assert (review.slices[-1]["volume"], review.currentSlice["volume"]) == ("old", "b")
    assert reviewRowTexts(review.slices[0]) == ("b: 0", "5.00", "0.990", "0.0 %", "")
    assert reviewRowTexts({"index": 3, "confidence": 0.5, "foreground_fraction": 0.25, "labeled": True}, "ja") == (
        "3", "", "0.500", "25.0 %", "ja")


def test_two_volume_study_round(scene, study, engine, tmp_path):
    (volumeA, userA), (volumeB, userB) = study
    before = {userA.GetID(): segmentationSnapshot(userA), userB.GetID(): segmentationSnapshot(userB)}
    session = _session(scene, tmp_path, engine)
    exported = session.start([(volumeA, userA), (volumeB, userB)], method="supervised", train={"iterations": 3})
    assert session.running
    progress = _finish(session)
    assert progress.state == "done" and progress.imported, progress.message
    assert [e["event"] for e in progress.events].count("predicted") == 2

    # both results imported into separate nodes, on their own volume's grid
    entryA, entryB = session.entries["v01_scanA"], session.entries["v02_scanB"]
    pseudoA, pseudoB = entryA.result.segmentationNode, entryB.result.segmentationNode
    assert len({pseudoA.GetID(), pseudoB.GetID(), userA.GetID(), userB.GetID()}) == 4
    assert pseudoA.GetName() == "scanA labels pseudo-labels" and pseudoB.GetName() == "scanB labels pseudo-labels"
    idsA = [s["id"] for s in exported.volume("v01_scanA").segments]
    idsB = [s["id"] for s in exported.volume("v02_scanB").segments]
    assert segmentsToArray(pseudoA, idsA, volumeA).shape == SHAPE_A
    predictedB = segmentsToArray(pseudoB, idsB, volumeB)
    assert predictedB.shape == SHAPE_B and predictedB[0].any()  # the fake engine fills slice 0
    assert arrayFromVolume(entryB.result.confidenceNode).shape == SHAPE_B
    assert entryA.result.confidenceNode is not entryB.result.confidenceNode
    for user in (userA, userB):
        assert segmentationSnapshot(user) == before[user.GetID()]

    # one review list across the study: least confident first, ties by volume order then slice index
    review = session.review
    assert len(review) == SHAPE_A[0] + SHAPE_B[0]
    assert [(e["volume"], e["index"]) for e in review.slices[:4]] == [
        ("v01_scanA", 0), ("v02_scanB", 0), ("v01_scanA", 1), ("v02_scanB", 1)]
    assert [(e["volume"], e["index"]) for e in review.slices[-1:]] == [("v01_scanA", 5)]

    # jumping to an entry of the second volume shows that volume and its slice
    entry = session.selectReview(row=3)
    assert (entry["volume"], entry["index"]) == ("v02_scanB", 1)
    for composite in composites(scene):
        assert composite.GetBackgroundVolumeID() == volumeB.GetID()
        assert composite.GetForegroundVolumeID() == entryB.result.confidenceNode.GetID()
    assert pseudoB.GetDisplayNode().GetVisibility() and not pseudoA.GetDisplayNode().GetVisibility()
    red = scene.GetNodesByClassByName("vtkMRMLSliceNode", "Red").GetItemAsObject(0)
    assert labeledslices.viewAxisAndIndex(volumeB, red) == (2, 1)

    # accept a slice of each volume
    assert session.acceptCurrent() == ("v02_scanB", 1)  # empty in the pseudo-labels: checked, so labelled
    np.testing.assert_array_equal(segmentsToArray(userB, idsB, volumeB)[1], predictedB[1])
    assert labeledslices.checkedSlices(userB) == (2, [0, 1])
    session.selectReview(row=0)
    assert session.review.currentSlice["volume"] == "v01_scanA"
    assert [c.GetBackgroundVolumeID() for c in composites(scene)] == [volumeA.GetID()] * 3
    assert pseudoA.GetDisplayNode().GetVisibility() and not pseudoB.GetDisplayNode().GetVisibility()
    predictedA = segmentsToArray(pseudoA, idsA, volumeA)
    assert predictedA[0].any()
    assert session.acceptCurrent() == ("v01_scanA", 0)
    np.testing.assert_array_equal(segmentsToArray(userA, idsA, volumeA)[0], predictedA[0])
    assert labeledslices.checkedSlices(userA) == (2, [0])
    assert session.review.slices[session.review.rowOfSlice("v01_scanA", 0)]["labeled"] is True
    # undo and redo the last one
    assert session.undoAccept() == ("v01_scanA", 0)
    assert segmentationSnapshot(userA) == before[userA.GetID()]
    session.selectReview(row=0)
    session.acceptCurrent()

    # retrain: both accepted slices are labelled slices of their volumes in the next job
    again = session.retrain(method="supervised", train={"iterations": 3})
    job = json.loads(Path(again.jobDir, "job.json").read_text())
    assert job["init_checkpoint"] == str(Path(exported.runDir, "checkpoint.pt"))
    assert [v.labeledSlices for v in again.volumes] == [[0, 2], [0, 1, 3]]
    assert job["volumes"][0]["axis"] == 2 and job["volumes"][1]["labeled_slices"] == [0, 1]
    import SimpleITK as sitk

    labelsA = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(again.jobDir, job["volumes"][0]["labels"]))))
    assert labelsA[0].any() and labelsA[0].max() <= 2
    assert _finish(session).state == "done"
    assert session.entries["v01_scanA"].result.segmentationNode is pseudoA  # updated in place
    assert session.review is not None and len(session.review) == SHAPE_A[0] + SHAPE_B[0]
    assert segmentationSnapshot(userB) != before[userB.GetID()]  # only through the accepts
    assert segmentsToArray(userB, idsB, volumeB)[[2, 4]].sum() == 0


def test_apply_to_more_volumes(scene, study, engine, tmp_path):
    (volumeA, userA), (volumeB, userB) = study
    session = _session(scene, tmp_path, engine)
    with pytest.raises(RuntimeError, match="no trained model"):
        session.applyToVolumes([volumeB])
    session.start([(volumeA, userA)], method="supervised", train={"iterations": 3})
    assert _finish(session).state == "done"
    before = {user.GetID(): segmentationSnapshot(user) for user in (userA, userB)}
    nodesBefore = scene.GetNumberOfNodes()
    later = addVolume(scene, np.zeros((4, 12, 14), np.float32), (1.0, 1.0, 2.0), (-50.0, 0.0, 0.0), name="later")
    with pytest.raises(ValueError, match="already in the study"):
        session.applyToVolumes([volumeA])
    jobDir = session.applyToVolumes([later, later])  # a volume ticked twice is segmented once
    assert session.running
    progress = _finish(session)
    assert progress.state == "done" and progress.imported, progress.message
    assert Path(jobDir, "predictions", "a01_later", "review.json").is_file()
    entry = session.entries["a01_later"]
    assert not entry.trained and entry.result.segmentationNode.GetName() == "later pseudo-labels"
    assert scene.GetNumberOfNodes() > nodesBefore
    ids = [s["id"] for s in session.study.segments]
    predicted = segmentsToArray(entry.result.segmentationNode, ids, later)
    assert predicted.shape == (4, 12, 14) and predicted.any()
    assert arrayFromVolume(entry.result.confidenceNode).shape == (4, 12, 14)
    # its slices join the review list, ordered with the study's (the fake predict's are 0.505 + 0.01 k)
    assert len(session.review) == SHAPE_A[0] + 4
    assert [(e["volume"], e["index"]) for e in session.review.slices[:3]] == [
        ("v01_scanA", 0), ("a01_later", 0), ("v01_scanA", 1)]
    session.selectReview(row=1)
    assert [c.GetBackgroundVolumeID() for c in composites(scene)] == [later.GetID()] * 3
    # accepting a slice of it makes its segmentation, which joins the study
    assert session.acceptCurrent() == ("a01_later", 0)
    made = scene.GetNodeByID(entry.volume.segmentationNodeId)
    assert made.GetName() == "later labels" and labeledslices.checkedSlices(made) == (2, [0])
    np.testing.assert_array_equal(segmentsToArray(made, ids, later)[0], predicted[0])
    for user in (userA, userB):
        assert segmentationSnapshot(user) == before[user.GetID()]
    again = session.retrain(method="supervised", train={"iterations": 3})
    assert [(v.name, v.labeledSlices) for v in again.volumes] == [("v01_scanA", [2]), ("v02_later", [0])]
    assert _finish(session).state == "done"
    assert list(session.entries) == ["v01_scanA", "v02_later"]


def test_module_logic_study(tmp_path):
    """SemiSegSlicer.py's logic class (outside Slicer, see modulesmoke.py): startStudy, the review across the
    volumes, accept, retrain on the study's pairs and applyToMoreVolumes."""
    fake = fakeengine.install(tmp_path / "fake")
    completed = subprocess.run([sys.executable, str(HERE / "modulesmoke.py"), str(fake), str(tmp_path / "cache"),
                                "study"], cwd=HERE, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["volumes"] == ["v01_scan0.nrrd", "v02_scan1.nrrd"] and seen["running"] is True
    assert seen["islands"] is False  # Keep largest island: none
    assert seen["state"] == "done" and seen["reviewVolumes"] == ["v01_scan0", "v02_scan1"]
    assert seen["row"] == 1 and seen["background"] == seen["secondVolume"]  # row 1: slice 0 of the second volume
    assert seen["accepted"] == 0 and seen["canUndo"] is True and seen["canRetrain"] is True
    assert seen["retrainLabelled"] == [[2], [0, 2]] and seen["retrainState"] == "done"
    assert seen["applyState"] == "done" and seen["reviewLength"] == 5 + 4 + 3
    assert seen["opacity"] == pytest.approx(0.5)


@pytest.mark.engine
def test_two_volume_study_with_the_real_engine(scene, tmp_path):
    """The real engine (a few iterations, small size, CPU) on two ACDC volumes, two labelled slices each: both
    volumes' results imported, one review list across them, a slice of the second volume accepted."""
    classes = (("right ventricle", (0.9, 0.3, 0.3)), ("myocardium", (0.3, 0.8, 0.3)),
               ("left ventricle", (0.3, 0.4, 0.9)))
    pairs, references = [], []
    for case in ("patient003_frame01", "patient004_frame01"):
        image, labels = DATA / "acdc" / "images" / f"{case}.nii.gz", DATA / "acdc" / "labels" / f"{case}.nii.gz"
        if not image.is_file() or not labels.is_file():
            pytest.fail(f"real ACDC data missing at {image.parent.parent}")
        volume = readVolume(scene, image, case)
        labelNode = readVolume(scene, labels, "reference", "vtkMRMLLabelMapVolumeNode")
        reference = arrayFromVolume(labelNode)
        scene.RemoveNode(labelNode)
        painted = [k for k in range(reference.shape[0]) if np.any(reference[k] == 3)]
        keep = [painted[len(painted) // 3], painted[2 * len(painted) // 3]]
        sparse = np.zeros_like(reference)
        sparse[keep] = reference[keep]
        segments = {name: (color, sparse == value) for value, (name, color) in enumerate(classes, start=1)}
        pairs.append((volume, addSegmentation(scene, volume, segments, name=f"{case} labels")))
        references.append(reference)
    before = [segmentationSnapshot(user) for _, user in pairs]
    session = StudySession(scene, sys.executable, str(tmp_path / "cache"), pythonPath=[str(ROOT / "Logic")])
    session.start(pairs, method="supervised", train={"iterations": 4, "size": 64, "device": "cpu",
                                                     "batch_labeled": 2, "batch_unlabeled": 2, "seed": 0})
    progress = _finish(session, seconds=600)
    assert progress.state == "done", progress.message
    kinds = [e["event"] for e in progress.events]
    assert kinds.count("volume") == 2 and kinds.count("predicted") == 2
    names = list(session.entries)
    assert names == ["v01_patient003_frame01", "v02_patient004_frame01"]
    for (volume, user), reference, name, snapshot in zip(pairs, references, names, before):
        result = session.entries[name].result
        ids = [s["id"] for s in session.study.volume(name).segments]
        assert segmentsToArray(result.segmentationNode, ids, volume).shape == reference.shape
        assert arrayFromVolume(result.confidenceNode).shape == reference.shape
        assert segmentationSnapshot(user) == snapshot
    assert len(session.review) == sum(r.shape[0] for r in references)
    gains = [e["gain"] for e in session.review.slices]  # the engine's order: the largest expected gain first
    assert gains == sorted(gains, reverse=True) and {e["volume"] for e in session.review.slices} == set(names)
    assert gains[0] > 0 and all(e["gain"] == 0 for e in session.review.slices if e.get("labeled"))
    row = next(r for r, e in enumerate(session.review.slices) if e["volume"] == names[1])
    entry = session.selectReview(row=row)
    assert all(c.GetBackgroundVolumeID() == pairs[1][0].GetID() for c in composites(scene))
    assert session.acceptCurrent() == (names[1], entry["index"])
    assert segmentationSnapshot(pairs[0][1]) == before[0]
    assert entry["index"] in labeledslices.labeledSlicesOfSegmentation(pairs[1][1], pairs[1][0])[1]


def test_study_previews_show_while_it_trains_and_the_final_results_replace_them(scene, study, engine, tmp_path,
                                                                                 capfd):
    """The engine's previews of a study (docs/JOB_FORMAT.md): preview 0 of both volumes, then one volume's at a time
    in turn; the fake engine waits at each until the test lets it go on."""
    (volumeA, userA), (volumeB, userB) = study
    before = {userA.GetID(): segmentationSnapshot(userA), userB.GetID(): segmentationSnapshot(userB)}
    session = _session(scene, tmp_path, engine, mode="preview", previews=4, gate=True, broken=[3])
    exported = session.start([(volumeA, userA), (volumeB, userB)], method="supervised", train={"iterations": 30})
    names, volumes = ["v01_scanA", "v02_scanB"], {"v01_scanA": volumeA, "v02_scanB": volumeB}
    ids = {name: [s["id"] for s in exported.volume(name).segments] for name in names}
    run = Path(exported.runDir)

    def labels(name):
        result = session.entries[name].result
        return segmentsToArray(result.segmentationNode, ids[name], volumes[name])

    def untouched():
        return all(segmentationSnapshot(user) == before[user.GetID()] for user in (userA, userB))

    # Preview 0 of both volumes (their priors): each in new nodes of its own, marked preliminary, while it trains;
    # one review list across both; the first volume shown, the other's layers hidden.
    progress, _ = pollUntil(session, lambda p, e: set(session.previews) == set(names))
    assert progress.state == "running" and progress.previewed and session.running
    assert "previews of scanA (iteration 0), scanB (iteration 0) — preliminary" in progress.text
    nodes = {}
    for name in names:
        result = session.entries[name].result
        assert result.preliminary and result.iteration == 0 and session.previews[name] is result
        nodes[name] = (result.segmentationNode, result.confidenceNode)
        np.testing.assert_array_equal(labels(name), fileLabels(run / "preview" / name))
        assert labels(name).max() == 2
        assert arrayFromVolume(result.confidenceNode) == pytest.approx(0.5)
        assert result.segmentationNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) == "0"
    (pseudoA, confidenceA), (pseudoB, confidenceB) = nodes["v01_scanA"], nodes["v02_scanB"]
    assert pseudoA.GetName() == "scanA labels pseudo-labels (preview at iteration 0 — preliminary)"
    assert len({pseudoA.GetID(), pseudoB.GetID(), userA.GetID(), userB.GetID()}) == 4
    assert len(session.review) == SHAPE_A[0] + SHAPE_B[0]
    assert {e["volume"] for e in session.review.slices} == set(names)
    assert session.result is session.entries["v01_scanA"].result
    assert [c.GetBackgroundVolumeID() for c in composites(scene)] == [volumeA.GetID()] * 3
    assert [c.GetForegroundVolumeID() for c in composites(scene)] == [confidenceA.GetID()] * 3
    assert pseudoA.GetDisplayNode().GetVisibility() and not pseudoB.GetDisplayNode().GetVisibility()
    assert untouched()
    withPreviews = sceneNodes(scene)
    session.selectReview(row=session.review.rowOfSlice("v02_scanB", 3))  # the user looks at scan B meanwhile
    assert session.result is session.entries["v02_scanB"].result

    # Preview 1, of scan A (iteration 10): its nodes updated in place; scan B, shown, stays as it was and shown.
    openGate(session)
    progress, _ = pollUntil(session, lambda p, e: session.previews["v01_scanA"].iteration == 10)
    assert progress.previewed and "previews of scanA (iteration 10), scanB (iteration 0) — preliminary" in progress.text
    result = session.entries["v01_scanA"].result
    assert (result.segmentationNode, result.confidenceNode) == (pseudoA, confidenceA) and result.preliminary
    assert pseudoA.GetName().endswith("(preview at iteration 10 — preliminary)")
    np.testing.assert_array_equal(labels("v01_scanA"), fileLabels(run / "preview" / "v01_scanA"))
    assert arrayFromVolume(confidenceA) == pytest.approx(0.6)
    assert session.entries["v02_scanB"].result.iteration == 0 and arrayFromVolume(confidenceB) == pytest.approx(0.5)
    assert sceneNodes(scene) == withPreviews  # no node added or left behind
    assert (session.review.currentSlice["volume"], session.review.currentSlice["index"]) == ("v02_scanB", 3)
    assert session.review.slices[0]["volume"] == "v01_scanA" and session.review.slices[0]["index"] == 1
    assert [c.GetBackgroundVolumeID() for c in composites(scene)] == [volumeB.GetID()] * 3
    assert pseudoB.GetDisplayNode().GetVisibility() and not pseudoA.GetDisplayNode().GetVisibility()
    assert untouched()

    # Preview 2, of scan B (iteration 20), in place.
    openGate(session)
    progress, _ = pollUntil(session, lambda p, e: session.previews["v02_scanB"].iteration == 20)
    assert session.entries["v02_scanB"].result.segmentationNode is pseudoB
    np.testing.assert_array_equal(labels("v02_scanB"), fileLabels(run / "preview" / "v02_scanB"))
    assert arrayFromVolume(confidenceB) == pytest.approx(0.7) and sceneNodes(scene) == withPreviews
    assert [c.GetForegroundVolumeID() for c in composites(scene)] == [confidenceB.GetID()] * 3

    # Preview 3, of scan A, is announced over a half-written labels file: skipped quietly, preview 1 stays.
    capfd.readouterr()
    openGate(session)
    progress, _ = pollUntil(session, lambda p, e: any(x["event"] == "preview" and x["iteration"] == 30 for x in e))
    assert not progress.previewed and progress.state == "running" and progress.message == ""
    assert "ERR|" not in capfd.readouterr().err, "the skipped preview printed the readers' errors"
    assert session.previews["v01_scanA"].iteration == 10 and pseudoA.GetName().endswith("iteration 10 — preliminary)")

    # Training ends: each volume's final result replaces its preview in the same nodes, no longer preliminary.
    openGate(session)
    progress, _ = pollUntil(session, lambda p, e: p.state != "running")
    assert progress.state == "done" and progress.imported, progress.message
    assert session.previews == {} and "preliminary" not in progress.text
    for name, (pseudo, confidence) in nodes.items():
        result = session.entries[name].result
        assert not result.preliminary and (result.segmentationNode, result.confidenceNode) == (pseudo, confidence)
        assert pseudo.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
        assert confidence.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
        np.testing.assert_array_equal(labels(name), fileLabels(run / "predictions" / name))
        assert arrayFromVolume(confidence) == pytest.approx(0.8)
    assert pseudoA.GetName() == "scanA labels pseudo-labels" and confidenceB.GetName() == "scanB confidence"
    assert sceneNodes(scene) == withPreviews  # no preview node left behind
    assert len(session.review) == SHAPE_A[0] + SHAPE_B[0]
    assert [(e["volume"], e["index"]) for e in session.review.slices[:2]] == [("v01_scanA", 0), ("v02_scanB", 0)]
    assert untouched()


def _firstRoundThenPreviewedRetrain(scene, study, engine, tmp_path):
    """A first round (no previews), scan B shown, then a retrain with previews (gated) until both volumes' preview 0
    is shown; returns the session, the last round's results, their arrays and the views' state, and the scene's nodes
    before the retrain."""
    (volumeA, userA), (volumeB, userB) = study
    session = _session(scene, tmp_path, engine)
    first = session.start([(volumeA, userA), (volumeB, userB)], method="supervised", train={"iterations": 3})
    assert _finish(session).state == "done"
    session.selectReview(row=session.review.rowOfSlice("v02_scanB", 1))  # the user looks at scan B
    volumes = {"v01_scanA": volumeA, "v02_scanB": volumeB}
    ids = {name: [s["id"] for s in first.volume(name).segments] for name in volumes}
    last = {name: entry.result for name, entry in session.entries.items()}

    def arrays(result, name):
        labels = segmentsToArray(result.segmentationNode, ids[name], volumes[name])
        return labels, arrayFromVolume(result.confidenceNode)

    lastArrays = {name: arrays(result, name) for name, result in last.items()}
    lastNames = {name: (r.segmentationNode.GetName(), r.confidenceNode.GetName()) for name, r in last.items()}
    lastSlices = [dict(e) for e in session.review.slices]
    nodes = sceneNodes(scene)

    session.env["FAKE_ENGINE"] = json.dumps({"mode": "preview", "previews": 3, "gate": True})
    session.retrain(method="supervised", train={"iterations": 30})
    pollUntil(session, lambda p, e: len(session.previews) == 2)
    return session, first, last, arrays, lastArrays, lastNames, lastSlices, nodes


def _assertLastRoundIntact(session, last, arrays, lastArrays, lastNames):
    """The last round's result nodes hold exactly their arrays and names, never marked preliminary."""
    for name, result in last.items():
        labels, confidence = arrays(result, name)
        np.testing.assert_array_equal(labels, lastArrays[name][0])
        np.testing.assert_array_equal(confidence, lastArrays[name][1])
        assert (result.segmentationNode.GetName(), result.confidenceNode.GetName()) == lastNames[name]
        assert result.segmentationNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
        assert result.confidenceNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
        assert not result.preliminary


def test_study_retrain_previews_go_into_new_nodes_and_a_cancel_shows_the_last_results_again(scene, study, engine,
                                                                                            tmp_path):
    """The scene stays intact on cancel: a retrain's previews come into new nodes (the last round's are not written
    while it runs), and a cancelled retrain leaves the last round's results as they were, reviewed and shown again;
    the previews stay in the scene, hidden and marked preliminary, as :class:`Session` keeps its previews."""
    (volumeA, userA), (volumeB, userB) = study
    snapshots = {user.GetID(): segmentationSnapshot(user) for user in (userA, userB)}
    session, first, last, arrays, lastArrays, lastNames, lastSlices, nodes = _firstRoundThenPreviewedRetrain(
        scene, study, engine, tmp_path)

    previews = {}
    for name, result in last.items():  # each volume's previews in new nodes; the last round's nodes not written
        preview = session.entries[name].result
        assert preview.preliminary and preview is session.previews[name]
        assert preview.segmentationNode is not result.segmentationNode
        assert preview.confidenceNode is not result.confidenceNode
        previews[name] = preview
    _assertLastRoundIntact(session, last, arrays, lastArrays, lastNames)
    assert len(sceneNodes(scene)) > len(nodes)
    assert session.review.slices != lastSlices  # the previews' list
    assert session.result is previews["v02_scanB"]  # scan B stays shown, its preview's layers
    assert [c.GetBackgroundVolumeID() for c in composites(scene)] == [volumeB.GetID()] * 3
    assert [c.GetForegroundVolumeID() for c in composites(scene)] == [previews["v02_scanB"].confidenceNode.GetID()] * 3
    assert previews["v02_scanB"].segmentationNode.GetDisplayNode().GetVisibility()
    for result in (*last.values(), previews["v01_scanA"]):  # no other pseudo-labels over it
        assert not result.segmentationNode.GetDisplayNode().GetVisibility()
    withPreviews = sceneNodes(scene)

    cancelShowsTheLastResultsAgain(session, "The job was cancelled.",
                                   "previews of scanA (iteration 0), scanB (iteration 0) — preliminary")
    # The last round's results, as they were, are what the review list and the views show again.
    assert {name: entry.result for name, entry in session.entries.items()} == last
    assert all(session.entries[name].result is result for name, result in last.items())
    _assertLastRoundIntact(session, last, arrays, lastArrays, lastNames)
    assert session.previews == {} and session.result is last["v02_scanB"]
    assert session.review.slices == lastSlices
    assert (session.review.currentSlice["volume"], session.review.currentSlice["index"]) == ("v02_scanB", 1)
    assert [c.GetBackgroundVolumeID() for c in composites(scene)] == [volumeB.GetID()] * 3
    assert [c.GetForegroundVolumeID() for c in composites(scene)] == [last["v02_scanB"].confidenceNode.GetID()] * 3
    assert last["v02_scanB"].segmentationNode.GetDisplayNode().GetVisibility()
    assert not last["v01_scanA"].segmentationNode.GetDisplayNode().GetVisibility()
    # The cancelled round's previews stay in the scene, hidden and marked preliminary.
    assert sceneNodes(scene) == withPreviews
    for preview in previews.values():
        assert preview.segmentationNode.GetScene() is scene
        assert not preview.segmentationNode.GetDisplayNode().GetVisibility()
        assert preview.segmentationNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) == "0"
        assert preview.segmentationNode.GetName().endswith("(preview at iteration 0 — preliminary)")
    assert all(segmentationSnapshot(user) == snapshots[user.GetID()] for user in (userA, userB))
    assert session.lastRunDir == first.runDir  # the next retrain starts from the last good checkpoint

    # A retrain after the cancel (no previews) updates the last round's nodes in place.
    session.env["FAKE_ENGINE"] = json.dumps({"mode": "done"})
    again = session.retrain(method="supervised", train={"iterations": 3})
    assert json.loads(Path(again.jobDir, "job.json").read_text())["init_checkpoint"] == str(
        Path(first.runDir, "checkpoint.pt"))
    assert _finish(session).state == "done"
    for name, result in last.items():
        assert session.entries[name].result.segmentationNode is result.segmentationNode
    assert not previews["v02_scanB"].segmentationNode.GetDisplayNode().GetVisibility()


def test_study_retrain_final_results_replace_its_previews_in_their_nodes(scene, study, engine, tmp_path):
    """A retrain with previews that ends: the final results come into the previews' nodes (new this round), the last
    round's nodes keep their arrays and stay hidden."""
    session, first, last, arrays, lastArrays, lastNames, lastSlices, nodes = _firstRoundThenPreviewedRetrain(
        scene, study, engine, tmp_path)
    previews = {name: session.previews[name] for name in last}
    for _ in range(2):  # previews 1 and 2, one volume's each
        openGate(session)
        pollUntil(session, lambda p, e: p.previewed)
    openGate(session)
    progress, _ = pollUntil(session, lambda p, e: p.state != "running")
    assert progress.state == "done" and progress.imported, progress.message
    for name, preview in previews.items():
        result = session.entries[name].result
        assert not result.preliminary and result.segmentationNode is preview.segmentationNode
        assert result.confidenceNode is preview.confidenceNode
        assert preview.segmentationNode.GetAttribute(resultimport.PREVIEW_ATTRIBUTE) is None
    _assertLastRoundIntact(session, last, arrays, lastArrays, lastNames)
    assert session.previews == {} and session.result is session.entries[session.shown].result
    assert not any(r.segmentationNode.GetDisplayNode().GetVisibility() for r in last.values())
    assert session.lastRunDir == session.study.runDir != first.runDir
