"""train -> predict -> evaluate through the command line, with outputs on the input's grid."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from semiseg.inference.review import review_slices
from semiseg.job import load_job, run_job

from enginetesting import write_job


def _semiseg(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _toy_train(toy_case, out, *extra) -> list:
    """``semiseg train`` arguments of a 3-iteration run on the toy case, written as NRRD to ``out``."""
    return ["train", "--image", toy_case["image"], "--labels", toy_case["labels"], "--iterations", 3, "--size", 32,
            "--batch-labeled", 2, "--device", "cpu", "--format", "nrrd", *extra, "--out", out]


def _same_grid(a: sitk.Image, b: sitk.Image):
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetSpacing(), b.GetSpacing())
    assert np.allclose(a.GetOrigin(), b.GetOrigin())
    assert np.allclose(a.GetDirection(), b.GetDirection())


def test_train_predict_evaluate_cli(toy_case, tmp_path):
    run = tmp_path / "run"
    proc = _semiseg(*_toy_train(toy_case, run))
    events = [json.loads(line)["event"] for line in proc.stdout.splitlines()]
    assert (
        events[0] == "setup" and events[1:3] == ["preview", "start"] and events[-1] == "done" and "predicted" in events
    )
    assert json.loads((run / "config.json").read_text())["axis_resolved"] == 2
    assert json.loads((run / "status.json").read_text()) == {"state": "done", "message": "", "exit_code": 0}
    pred_dir = run / "predictions" / "image"
    ref = sitk.ReadImage(str(toy_case["image"]))
    for name in ("labels", "confidence", "entropy"):
        _same_grid(ref, sitk.ReadImage(str(pred_dir / f"{name}.nrrd")))  # rotated direction, anisotropic spacing kept
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "labels.nrrd")))
    sparse = sitk.GetArrayFromImage(sitk.ReadImage(str(toy_case["labels"])))
    conf = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "confidence.nrrd")))
    ent = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_dir / "entropy.nrrd")))
    assert labels.dtype == np.uint8 and labels.max() <= 2
    assert (
        conf.min() >= 1 / 3 - 1e-5 and conf.max() <= 1 + 1e-5 and ent.min() >= -1e-6 and ent.max() <= np.log(3) + 1e-5
    )
    review = json.loads((pred_dir / "review.json").read_text())
    gains = [s["gain"] for s in review["slices"]]
    assert gains == sorted(gains, reverse=True) and len(gains) == 6 and review["axis"] == 2
    assert {s["index"] for s in review["slices"] if s["labeled"]} == {1, 4}
    assert all(s["gain"] == 0 for s in review["slices"] if s["labeled"]) and gains[0] > 0  # the user's: nothing to gain

    out = tmp_path / "again"  # predict knows no labelled slices: the network alone, as the run without completion
    _semiseg("predict", "--run", run, "--image", toy_case["image"], "--out", out)
    again = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    assert not np.array_equal(again, labels) and np.array_equal(labels[[1, 4]], sparse[[1, 4]])  # the run's: fused
    alone = tmp_path / "alone"
    _semiseg(*_toy_train(toy_case, alone, "--no-completion"))
    assert not (alone / "preview").exists()
    network = sitk.GetArrayFromImage(sitk.ReadImage(str(alone / "predictions" / "image" / "labels.nrrd")))
    assert np.array_equal(again, network)

    ev = json.loads(
        _semiseg(
            "evaluate",
            "--pred",
            pred_dir / "labels.nrrd",
            "--ref",
            toy_case["image"].parent / "labels.nrrd",
            "--slices",
            "1,4",
            "--axis",
            2,
        ).stdout
    )
    assert set(ev["classes"]) == {"1", "2"} and 0.0 <= ev["mean"]["dice"] <= 1.0


def test_evaluate_rejects_other_grid(toy_case, tmp_path):
    other = sitk.ReadImage(str(toy_case["labels"]))
    other.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(other, str(tmp_path / "other.nrrd"))
    proc = _semiseg("evaluate", "--pred", tmp_path / "other.nrrd", "--ref", toy_case["labels"], check=False)
    assert proc.returncode == 2 and "other.nrrd: does not lie on the image's grid: spacing" in proc.stderr


def test_warm_start_and_unlabeled_volumes(toy_case):
    write_job(toy_case["dir"], unlabeled=["image.nrrd"], output_format="mha")
    first = run_job(load_job(toy_case["dir"]))
    assert set(first["predictions"]) == {"image", "image_2"}
    write_job(toy_case["dir"], init_checkpoint="run/checkpoint.pt", run_dir="run2")
    second = run_job(load_job(toy_case["dir"]))
    assert (toy_case["dir"] / "run2" / "predictions" / "image" / "labels.nii.gz").exists()
    assert second["iteration"] == 2


def test_review_ranks_uncertain_slices_first():
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[:, 2:6, 2:6] = 1
    conf = np.ones((3, 8, 8), np.float32)
    conf[0, 2:6, 2:6] = 0.6
    conf[2, 2:6, 2:6] = 0.8
    ranked = review_slices(labels, conf, axis=2, labeled={1})
    assert [e["index"] for e in ranked] == [0, 2, 1]
    assert ranked[0]["confidence"] == pytest.approx(0.6) and ranked[-1]["labeled"] is True
