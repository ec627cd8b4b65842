"""A study of several volumes in the page's logic (issue 12, item 3), on a real trame-slicer application without a
browser, with the fake engine (``Testing/mrml/fakeengine.py``): volumes marked as part of the study, each with its
own labels, trained as one job (StudySession); one review list across them whose entries show their volume and
slice; accepting a slice in each volume; Retrain sends both; Apply to more volumes segments a volume outside the
study without training."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from webtesting import HERE, synthetic_volume

sys.path.insert(0, str(HERE.parent / "mrml"))
import fakeengine  # noqa: E402

SHAPES = {"alpha": (8, 48, 40), "beta": (6, 40, 40), "gamma": (5, 32, 36)}


@pytest.fixture
def web(tmp_path):
    from trame.app import get_server

    from semiseg_web.app import SemiSegWebApp

    server = get_server(f"semiseg-study-{tmp_path.name}", client_type="vue3")
    app = SemiSegWebApp(server, cacheDir=str(tmp_path / "cache"), outDir=str(tmp_path / "out"),
                        segmentNames=("disc",))
    fake = str(fakeengine.install(tmp_path / "fake"))
    app.logic.session.pythonPath = [fake]  # every session the page makes from now on runs the fake engine
    app.logic.session.env = dict(app.logic.session.env, FAKE_ENGINE=json.dumps({"mode": "done"}))
    app.tmp = tmp_path
    paths = [synthetic_volume(tmp_path / f"{name}.nrrd", shape=shape) for name, shape in SHAPES.items()]
    app.logic.openPaths(paths)
    yield app
    app.shutdown()


def _finish(logic, start, *args):
    """Run a page action that starts a job and follow it to its end, as the server's event loop does."""

    async def run():
        start(*args)
        await asyncio.wait_for(logic._follower, 120)

    asyncio.run(run())
    assert logic.data.train.state == "done", (logic.data.train.text, logic.data.error)


def _newestJob(tmp_path) -> dict:
    jobs = sorted((tmp_path / "cache").glob("job-*/job.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(jobs[-1].read_text())


def _backgrounds(logic) -> set:
    nodes = logic.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return {nodes.GetItemAsObject(i).GetBackgroundVolumeID() for i in range(nodes.GetNumberOfItems())}


def test_a_two_volume_study_trained_reviewed_accepted_retrained_and_applied(web):
    logic, data = web.logic, web.logic.data
    alpha, beta, gamma = logic.allVolumes
    assert [v.name for v in data.volumes] == ["alpha", "beta", "gamma"] and data.active_volume == alpha.GetID()
    assert data.study.count == 0 and not data.study.active
    with pytest.raises(ValueError, match="two volumes or more"):
        logic.trainStudy()

    # two volumes marked as part of the study, each labelled on its own
    logic.setInStudy(alpha.GetID(), True)
    logic.setInStudy(beta.GetID(), True)
    assert [v.in_study for v in data.volumes] == [True, True, False] and data.study.count == 2
    logic.stepSlice(-100)
    logic.stepSlice(3)
    logic.markChecked()
    logic.selectVolume(beta.GetID())
    assert logic.volume is beta and data.slice_count == 6 and data.labeled_slices == []
    assert logic.labels is not logic.labelsOf[alpha.GetID()] and [s.name for s in data.segments] == ["disc"]
    logic.stepSlice(-100)
    logic.stepSlice(2)
    logic.markChecked()
    assert [v.labeled for v in data.volumes] == [1, 1, 0]

    data.train.iterations, data.train.size = 3, 32
    _finish(logic, logic.trainStudy)
    job = _newestJob(web.tmp)
    assert [(v["image"], v["labeled_slices"]) for v in job["volumes"]] == [
        ("v01_alpha.nrrd", [3]), ("v02_beta.nrrd", [2])]
    assert data.study.active and data.review.has_results and data.train.can_retrain

    # one review list across both volumes, least confident first (the fake engine: slice k at 0.5 + 0.01 k)
    rows = data.review.rows
    assert len(rows) == 8 + 6
    assert [(r.volume, r.index) for r in rows[:4]] == [("alpha", 0), ("beta", 0), ("alpha", 1), ("beta", 1)]
    assert [r.confidence for r in rows] == sorted(r.confidence for r in rows)

    # an entry of the second volume shows that volume and slice; accept it, then one of the first volume
    logic.selectVolume(alpha.GetID())
    logic.selectReviewRow(3)
    assert logic.volume is beta and data.active_volume == beta.GetID() and _backgrounds(logic) == {beta.GetID()}
    assert (data.current_slice, data.slice_count) == (1, 6) and data.review.current == 3
    assert "of beta" in data.message
    logic.acceptSlice()
    assert data.labeled_slices == [1, 2] and [v.labeled for v in data.volumes] == [1, 2, 0]
    logic.selectReviewRow(0)
    assert logic.volume is alpha and _backgrounds(logic) == {alpha.GetID()}
    assert (data.current_slice, data.slice_count) == (0, 8)
    logic.acceptSlice()
    assert data.labeled_slices == [0, 3] and data.review.rows[0].labeled and data.review.can_undo
    logic.undoAccept()
    assert data.labeled_slices == [3]
    logic.selectReviewRow(0)
    logic.acceptSlice()

    # Retrain: every accepted slice, of both volumes, is a labelled slice of the next job
    _finish(logic, logic.train, True)
    job = _newestJob(web.tmp)
    assert [(v["image"], v["labeled_slices"]) for v in job["volumes"]] == [
        ("v01_alpha.nrrd", [0, 3]), ("v02_beta.nrrd", [1, 2])]
    assert job["init_checkpoint"] and Path(job["init_checkpoint"]).name == "checkpoint.pt"
    assert data.study.active and len(data.review.rows) == 14

    # a volume loaded now (the others, the labels and the results stay)
    shown = logic.volume
    logic.addPaths([synthetic_volume(web.tmp / "delta.nrrd", shape=(4, 30, 30))])
    assert [v.name for v in data.volumes] == ["alpha", "beta", "gamma", "delta"] and logic.volume is shown
    assert _backgrounds(logic) == {shown.GetID()} and len(data.review.rows) == 14 and data.study.active
    delta = logic.allVolumes[3]

    # Apply to more volumes: the volumes outside the study (loaded at the start or later) segmented with the model,
    # without training; their slices join the review list
    assert data.study.can_apply
    jobs = len(list((web.tmp / "cache").glob("job-*")))
    _finish(logic, logic.applyToMoreVolumes)
    assert len(list((web.tmp / "cache").glob("job-*"))) == jobs + 1
    assert [v.segmented for v in data.volumes] == [False, False, True, True] and not data.study.can_apply
    assert len(data.review.rows) == 8 + 6 + 5 + 4
    assert {r.volume for r in data.review.rows} == {"alpha", "beta", "gamma", "delta"}
    row = next(r.row for r in data.review.rows if r.volume == "gamma")
    logic.selectReviewRow(row)
    assert logic.volume is gamma and _backgrounds(logic) == {gamma.GetID()} and data.slice_count == 5
    # accepting a slice of a volume segmented later gives it labels, and it joins the study
    row = next(r.row for r in data.review.rows if r.volume == "delta")
    logic.selectReviewRow(row)
    logic.acceptSlice()
    assert logic.volume is delta and data.volumes[3].in_study and data.volumes[3].labeled == 1
    assert logic.labels is logic.labelsOf[delta.GetID()] and data.study.count == 3
    _finish(logic, logic.train, True)
    job = _newestJob(web.tmp)
    assert [v["image"] for v in job["volumes"]] == ["v01_alpha.nrrd", "v02_beta.nrrd", "v03_delta.nrrd"]


def test_the_one_volume_workflow_is_unchanged_beside_a_study(web):
    """Train (not Train study) trains the shown volume, the other volumes as unlabelled data, as before."""
    logic, data = web.logic, web.logic.data
    logic.stepSlice(-100)
    logic.markChecked()
    data.train.iterations, data.train.size = 3, 32
    _finish(logic, logic.train)
    job = _newestJob(web.tmp)
    assert "volumes" not in job and len(job.get("unlabeled", [])) == 2, job
    assert logic.mode == "single" and not data.study.active
    assert all(r.volume == "" for r in data.review.rows) and len(data.review.rows) == 8
    logic.selectReviewRow(0)
    logic.acceptSlice()
    assert 0 in data.labeled_slices
