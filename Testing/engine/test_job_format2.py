"""Job format 2: one training over several volumes, each completed and predicted on its own (docs/JOB_FORMAT.md).

The refusals run in-process through ``semiseg.cli.main`` (exit code, message, nothing written) on small
synthetic volumes; the one real run trains on two ACDC volumes with two painted slices each and a third,
unlabelled one.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time

import numpy as np
import pytest
import SimpleITK as sitk

from semiseg import cli
from semiseg.contract import (
    EVENTS,
    JOB_FORMAT_VERSION,
    JOB_FORMAT_VERSIONS,
    SHARED_JOB_FIELDS,
    JobFields,
    VolumeFields,
    VolumesJobFields,
)
from semiseg.errors import InputError
from semiseg.job import VolumesJob, load_job, prepare, run_job

from enginetesting import acdc_path, write_volume

FAST = {"iterations": 3, "size": 32, "batch_labeled": 2, "batch_unlabeled": 2, "val_every": 0, "device": "cpu",
        "threads": 1}
SHAPE = (6, 40, 36)  # K, J, I


def _write_job(job_dir, volumes, **fields):
    """``job.json`` as a front end writes it, through the contract's dataclasses."""
    job = dataclasses.asdict(VolumesJobFields(volumes=[VolumeFields(**v) for v in volumes], **fields))
    (job_dir / "job.json").write_text(json.dumps(job))
    return job


@pytest.fixture
def three(toy_case):
    """The toy case (image.nrrd, labels.nrrd: slices 1 and 4) and a second labelled (b) and an unlabelled (c) volume."""
    d = toy_case["dir"]
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(toy_case["image"])))
    full = toy_case["full_labels"]
    sparse_b = np.zeros_like(full)
    sparse_b[2] = full[2]
    write_volume(d / "b.nrrd", np.flip(image, 2).copy())
    write_volume(d / "b_labels.nrrd", np.flip(sparse_b, 2).copy())
    write_volume(d / "c.nrrd", image[::-1].copy())
    volumes = [{"image": "image.nrrd", "labels": "labels.nrrd"}, {"image": "b.nrrd", "labels": "b_labels.nrrd"},
               {"image": "c.nrrd"}]
    return {"dir": d, "volumes": volumes, "full": full}


@pytest.fixture
def main_in_process():
    """``semiseg`` in this process; its SIGTERM handler is put back afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    yield cli.main
    signal.signal(signal.SIGTERM, before)


def _refused(main, capsys, job_dir, *patterns):
    code = main(["train", "--job", str(job_dir)])
    err = capsys.readouterr().err
    assert code == 2, err
    for pattern in patterns:
        assert pattern in err, err
    assert not (job_dir / "run").exists(), "bad input must not leave a partial run folder"
    return err


def test_the_contract_describes_both_forms():
    assert JOB_FORMAT_VERSION == 2 and JOB_FORMAT_VERSIONS == (1, 2)
    assert set(SHARED_JOB_FIELDS) == {f.name for f in dataclasses.fields(JobFields)} - {
        "format_version", "image", "labels", "unlabeled", "labeled_slices", "axis"}
    volumes = [VolumeFields("a.nrrd", "a_labels.nrrd"), VolumeFields("b.nrrd")]
    job = dataclasses.asdict(VolumesJobFields(volumes=volumes))
    assert job["format_version"] == 2 and job["predict_images"] == []
    assert job["volumes"][1] == {"image": "b.nrrd", "labels": None, "labeled_slices": [], "axis": "auto"}
    assert {"volume", "predicting"} <= set(EVENTS)


def test_load_resolves_each_volume(three):
    _write_job(three["dir"], three["volumes"], predict_images=["image.nrrd"])
    with pytest.raises(InputError, match=r"volumes\[0\] \(image\.nrrd\) and predict_images\[0\] \(image\.nrrd\)"):
        load_job(three["dir"])  # one output folder for two volumes
    three["volumes"][1]["axis"] = 2
    _write_job(three["dir"], three["volumes"], train=FAST)
    job = load_job(three["dir"])
    assert isinstance(job, VolumesJob)
    assert job.volumes[0].image == str(three["dir"] / "image.nrrd") and job.volumes[2].labels is None
    prepared = prepare(job)
    assert [(v.name, v.axis, v.labeled, v.train) for v in prepared.volumes] == [
        ("image", 2, [1, 4], True), ("b", 2, [2], True), ("c", 2, [], True)]
    assert prepared.num_classes == 3 and prepared.axis == 2
    assert len(prepared.data.labeled) == 3 and len(prepared.data.unlabeled) == 3 * 6 - 3  # pooled over volumes
    assert all(v.prior is not None for v in prepared.volumes[:2]) and prepared.volumes[2].prior is None


def test_missing_file(three, main_in_process, capsys):
    _write_job(three["dir"], three["volumes"])
    (three["dir"] / "b_labels.nrrd").unlink()
    _refused(main_in_process, capsys, three["dir"], "b_labels.nrrd: file not found (volumes[1] in ", "job.json)")


def test_labels_of_another_geometry(three, main_in_process, capsys):
    lab = sitk.ReadImage(str(three["dir"] / "b_labels.nrrd"))
    lab.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(lab, str(three["dir"] / "b_labels.nrrd"))
    _write_job(three["dir"], three["volumes"])
    _refused(main_in_process, capsys, three["dir"], "b_labels.nrrd: does not lie on the image's grid: origin",
             "(volumes[1] in ")


def test_labels_with_no_painted_slice(three, main_in_process, capsys):
    write_volume(three["dir"] / "b_labels.nrrd", np.zeros(SHAPE, np.uint8))
    _write_job(three["dir"], three["volumes"])
    _refused(main_in_process, capsys, three["dir"], "b_labels.nrrd: no labelled slice", "(volumes[1] in ")


@pytest.mark.parametrize("axis", [3, -1, "k"])
def test_axis_out_of_range(three, main_in_process, capsys, axis):
    three["volumes"][2]["axis"] = axis
    _write_job(three["dir"], three["volumes"])
    _refused(main_in_process, capsys, three["dir"], "job.json: volumes[2] (c.nrrd): 'axis' must be 'auto', 0, 1 or 2")


def test_two_volumes_with_the_same_name(three, main_in_process, capsys):
    (three["dir"] / "sub").mkdir()
    write_volume(three["dir"] / "sub" / "c.nrrd", np.ones(SHAPE, np.float32))
    _write_job(three["dir"], three["volumes"] + [{"image": "sub/c.nrrd"}])
    _refused(main_in_process, capsys, three["dir"], "volumes[2] (c.nrrd) and volumes[3] (sub/c.nrrd)",
             "same name 'c'", "predictions/c/")


def test_no_labelled_volume(three, main_in_process, capsys):
    _write_job(three["dir"], [{"image": "image.nrrd"}, {"image": "c.nrrd"}])
    _refused(main_in_process, capsys, three["dir"], "job.json: no labelled volume")


def test_other_bad_volume_entries(three, main_in_process, capsys):
    d = three["dir"]
    (d / "job.json").write_text(json.dumps({"format_version": 2, "volumes": []}))
    _refused(main_in_process, capsys, d, "'volumes' must be a non-empty list")
    (d / "job.json").write_text(json.dumps({"format_version": 2, "volumes": [{"image": "image.nrrd", "lables": "x"}]}))
    _refused(main_in_process, capsys, d, "volumes[0]: unknown key(s) ['lables']")
    (d / "job.json").write_text(json.dumps({"format_version": 2, "volumes": [{"labels": "labels.nrrd"}]}))
    _refused(main_in_process, capsys, d, "volumes[0]: needs an 'image'")
    (d / "job.json").write_text(json.dumps({"format_version": 1, "volumes": [{"image": "image.nrrd"}]}))
    _refused(main_in_process, capsys, d, "'volumes' needs format_version 2")
    (d / "job.json").write_text(json.dumps({"format_version": 2, "volumes": three["volumes"], "image": "image.nrrd"}))
    _refused(main_in_process, capsys, d, "unknown key(s) ['image']", "each volume names its own")
    _write_job(d, three["volumes"], predict_images=["missing.nrrd"])
    _refused(main_in_process, capsys, d, "missing.nrrd: file not found (predict_images[0] in ")
    three["volumes"][0]["labeled_slices"] = [9]
    _write_job(d, three["volumes"], predict_images=[])
    _refused(main_in_process, capsys, d, "labelled slice index(es) [9] outside 0..5 along axis 2", "(volumes[0] in ")
    _write_job(d, [{"image": "image.nrrd", "labels": "labels.nrrd"}, {"image": "c.nrrd", "labeled_slices": [1]}])
    _refused(main_in_process, capsys, d, "volumes[1] (c.nrrd): 'labeled_slices' needs 'labels'")


def test_format_1_is_still_read_and_the_single_volume_form_takes_version_2(three):
    """A format-1 job, and a front end's single-volume job written through JobFields (now version 2), run alike."""
    d = three["dir"]
    single = dataclasses.asdict(JobFields(image="image.nrrd", labels="labels.nrrd", unlabeled=["c.nrrd"], train=FAST))
    assert single["format_version"] == 2
    for version in (1, 2):
        (d / "job.json").write_text(json.dumps({**single, "format_version": version}))
        prepared = prepare(load_job(d))
        assert [(v.name, v.labeled) for v in prepared.volumes] == [("image", [1, 4]), ("c", [])]


def test_each_volume_its_axis_and_volumes_only_predicted(three):
    """A volume painted on J slices is sliced along J, the others along K; ``predict_images`` are predicted with
    the job's axis and are no training data; the painted slices come out as painted along each volume's axis."""
    d, full = three["dir"], three["full"]
    sparse_j = np.zeros_like(full)
    sparse_j[:, [14, 26]] = full[:, [14, 26]]
    write_volume(d / "j.nrrd", sitk.GetArrayFromImage(sitk.ReadImage(str(d / "image.nrrd"))))
    write_volume(d / "j_labels.nrrd", sparse_j)
    write_volume(d / "only.nrrd", np.flip(sitk.GetArrayFromImage(sitk.ReadImage(str(d / "c.nrrd"))), 1).copy())
    volumes = three["volumes"] + [{"image": "j.nrrd", "labels": "j_labels.nrrd"}]
    _write_job(d, volumes, predict_images=["only.nrrd"], method="supervised", train=FAST,
               completion={"preview_every": 0})
    summary = run_job(load_job(d))
    events = [json.loads(line) for line in (d / "run" / "progress.jsonl").read_text().splitlines()]
    described = {e["name"]: e for e in events if e["event"] == "volume"}
    assert {n: (e["axis"], e["labeled_slices"], e["train"]) for n, e in described.items()} == {
        "image": (2, [1, 4], True), "b": (2, [2], True), "c": (2, [], True), "j": (1, [14, 26], True),
        "only": (2, [], False)}
    start = next(e for e in events if e["event"] == "start")
    assert start["labeled_slices"] == 2 + 1 + 2 and start["unlabeled_slices"] == (6 - 2) + (6 - 1) + 6 + (40 - 2)
    assert described["only"]["slices"] == 6 and described["j"]["slices"] == 40
    assert not any(e["event"] == "preview" for e in events)
    assert sorted(summary["predictions"]) == ["b", "c", "image", "j", "only"]
    labels = {n: sitk.GetArrayFromImage(sitk.ReadImage(str(d / "run" / "predictions" / n / "labels.nii.gz")))
              for n in summary["predictions"]}
    np.testing.assert_array_equal(labels["j"][:, [14, 26]], sparse_j[:, [14, 26]])
    np.testing.assert_array_equal(labels["image"][[1, 4]], full[[1, 4]])
    review = json.loads((d / "run" / "predictions" / "j" / "review.json").read_text())
    assert review["axis"] == 1 and len(review["slices"]) == 40
    assert json.loads((d / "run" / "config.json").read_text())["axis_resolved"] == 2


def test_two_labelled_acdc_volumes_and_an_unlabelled_one(tmp_path, main_in_process):
    """``semiseg train --job``: one training on 2 + 2 painted slices of two ACDC volumes and a third, unlabelled
    volume; every volume is predicted, and each labelled volume's painted slices come out exactly as painted."""
    cases = ["patient003_frame01", "patient004_frame01", "patient005_frame01"]
    volumes, painted = [], {}
    for case in cases[:2]:
        ref = sitk.ReadImage(str(acdc_path("labels", case)))
        full = sitk.GetArrayFromImage(ref)
        with_lv = [k for k in range(full.shape[0]) if np.any(full[k] == 3)]
        keep = [with_lv[len(with_lv) // 3], with_lv[2 * len(with_lv) // 3]]
        sparse = np.zeros_like(full)
        sparse[keep] = full[keep]
        out = sitk.GetImageFromArray(sparse)
        out.CopyInformation(ref)
        sitk.WriteImage(out, str(tmp_path / f"{case}_sparse.nii.gz"))
        volumes.append({"image": str(acdc_path("images", case)), "labels": f"{case}_sparse.nii.gz"})
        painted[case] = (keep, sparse)
    volumes.append({"image": str(acdc_path("images", cases[2]))})
    _write_job(tmp_path, volumes, method="fixmatch", classes=["background", "RV", "myocardium", "LV"],
               train={**FAST, "iterations": 4}, completion={"preview_every": 1e-3})

    started = time.perf_counter()
    assert main_in_process(["train", "--job", str(tmp_path)]) == 0
    seconds = time.perf_counter() - started
    run = tmp_path / "run"
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    events = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[:4] == ["setup", "volume", "volume", "volume"] and kinds[-1] == "done"
    assert [e["name"] for e in events if e["event"] == "volume"] == cases
    assert [(e["labeled_slices"], e["train"]) for e in events if e["event"] == "volume"][2] == ([], True)
    start = next(e for e in events if e["event"] == "start")
    slices = sum(sitk.ReadImage(str(acdc_path("images", c))).GetSize()[2] for c in cases)
    assert start["labeled_slices"] == 4 and start["unlabeled_slices"] == slices - 4
    assert {e["name"] for e in events if e["event"] == "preview"} == set(cases[:2])  # the first, then in turn
    assert [(e["name"], e["number"], e["of"]) for e in events if e["event"] == "predicted"] == [
        (c, n, 3) for n, c in enumerate(cases, 1)]
    assert kinds.index("predicting") < kinds.index("predicted")
    assert sorted(p.name for p in (run / "predictions").iterdir()) == sorted(cases)

    for case in cases:
        pred_dir = run / "predictions" / case
        image = sitk.ReadImage(str(acdc_path("images", case)))
        labels_image = sitk.ReadImage(str(pred_dir / "labels.nii.gz"))
        assert labels_image.GetSize() == image.GetSize()
        for name in ("confidence", "entropy"):
            assert (pred_dir / f"{name}.nii.gz").is_file()
        review = json.loads((pred_dir / "review.json").read_text())
        labels = sitk.GetArrayFromImage(labels_image)
        if case in painted:
            keep, sparse = painted[case]
            np.testing.assert_array_equal(labels[keep], sparse[keep])  # the completion keeps the user's slices
            assert sorted(s["index"] for s in review["slices"] if s["labeled"]) == keep
        else:
            assert not any(s["labeled"] for s in review["slices"])
    config = json.loads((run / "config.json").read_text())
    assert [v["labeled_slices"] for v in config["volumes_resolved"]] == [painted[c][0] for c in cases[:2]] + [[]]
    print(f"format-2 ACDC run: {seconds:.1f} s")
