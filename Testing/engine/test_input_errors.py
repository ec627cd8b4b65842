"""Every kind of bad input gets a clear message naming the file and the problem, and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from semiseg.contract import JOB_FORMAT_VERSION
from semiseg.errors import InputError
from semiseg.job import load_job, run_job

from enginetesting import write_job, write_volume


def _run(job_dir):
    run_job(load_job(job_dir))


def _assert_nothing_written(job_dir):
    assert not (job_dir / "run").exists(), "bad input must not leave a partial run folder"


@pytest.fixture
def case(toy_case):
    write_job(toy_case["dir"])
    return toy_case


def test_missing_image(case):
    (case["dir"] / "image.nrrd").unlink()
    with pytest.raises(InputError, match=r"image\.nrrd: file not found"):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_unreadable_image(case):
    (case["dir"] / "image.nrrd").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match=r"image\.nrrd: cannot be read as an image"):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_geometry_mismatch(case):
    lab = sitk.ReadImage(str(case["labels"]))
    lab.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(lab, str(case["labels"]))
    with pytest.raises(InputError, match=r"labels\.nrrd: does not lie on the image's grid: origin"):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_size_mismatch(case):
    write_volume(case["labels"], np.zeros((6, 40, 30), np.uint8))
    with pytest.raises(InputError, match=r"labels\.nrrd: .*size \(30, 40, 6\) != image size \(36, 40, 6\)"):
        _run(case["dir"])


def test_no_labelled_slice(case):
    write_volume(case["labels"], np.zeros((6, 40, 36), np.uint8))
    with pytest.raises(InputError, match=r"labels\.nrrd: no labelled slice"):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_fewer_than_two_classes_declared(case):
    write_job(case["dir"], classes=["background"])
    with pytest.raises(InputError, match="fewer than 2 classes"):
        _run(case["dir"])


def test_only_background_with_checked_slices(case):
    write_volume(case["labels"], np.zeros((6, 40, 36), np.uint8))
    write_job(case["dir"], labeled_slices=[2], axis=2)
    with pytest.raises(InputError, match=r"labels\.nrrd: fewer than 2 classes"):
        _run(case["dir"])


def test_label_outside_declared_classes(case):
    lab = np.zeros((6, 40, 36), np.uint8)
    lab[1, 5:9, 5:9] = 7
    write_volume(case["labels"], lab)
    write_job(case["dir"], classes=["background", "a", "b"])
    with pytest.raises(
        InputError, match=r"labels\.nrrd: holds label value\(s\) \[7\] outside the declared classes 0\.\.2"
    ):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_four_d_image(case):
    img = sitk.JoinSeries([sitk.ReadImage(str(case["image"]))] * 2)
    sitk.WriteImage(img, str(case["image"]))
    with pytest.raises(InputError, match=r"image\.nrrd: is 4D"):
        _run(case["dir"])


def test_rgb_image(case):
    rgb = sitk.GetImageFromArray(np.zeros((6, 40, 36, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(case["image"]))
    with pytest.raises(InputError, match=r"image\.nrrd: has 3 components per voxel"):
        _run(case["dir"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_voxels(case, bad):
    arr = np.ones((6, 40, 36), np.float32)
    arr[2, 3, 4] = bad
    write_volume(case["image"], arr)
    with pytest.raises(InputError, match=r"image\.nrrd: holds 1 NaN or infinite voxel"):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_volume_too_small(case):
    write_volume(case["image"], np.ones((6, 4, 36), np.float32))
    write_volume(case["labels"], np.ones((6, 4, 36), np.uint8))
    with pytest.raises(InputError, match=r"image\.nrrd: is too small to slice"):
        _run(case["dir"])


def test_newer_job_format(case):
    write_job(case["dir"], format_version=99)
    with pytest.raises(
        InputError, match=rf"job\.json: written by a newer SemiSegSlicer \(job format 99 > {JOB_FORMAT_VERSION}\)"
    ):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_unknown_job_key_and_unknown_method(case):
    write_job(case["dir"], iterationz=5)
    with pytest.raises(InputError, match=r"unknown key\(s\) \['iterationz'\]"):
        load_job(case["dir"])
    write_job(case["dir"], method="magic")
    with pytest.raises(InputError, match=r"unknown method 'magic'; valid methods: .*supervised"):
        load_job(case["dir"])
    write_job(case["dir"], train={"iterations": 2, "sizes": 3})
    with pytest.raises(InputError, match=r"unknown train key\(s\) \['sizes'\]"):
        load_job(case["dir"])


def test_listed_slice_out_of_range(case):
    write_job(case["dir"], labeled_slices=[40], axis=2)
    with pytest.raises(InputError, match=r"outside 0\.\.5 along axis 2"):
        _run(case["dir"])


def test_invalid_json(case):
    (case["dir"] / "job.json").write_text("{not json")
    with pytest.raises(InputError, match=r"job\.json: is not valid JSON"):
        load_job(case["dir"])


def test_bad_unlabeled_volume_named(case):
    write_job(case["dir"], unlabeled=["missing_extra.nii.gz"])
    with pytest.raises(InputError, match=r"missing_extra\.nii\.gz: file not found"):
        _run(case["dir"])
    _assert_nothing_written(case["dir"])


def test_cli_reports_bad_input_with_exit_code_2(case, capsys):
    from semiseg.cli import main

    (case["dir"] / "image.nrrd").unlink()
    assert main(["train", "--job", str(case["dir"])]) == 2
    err = capsys.readouterr().err
    assert "image.nrrd: file not found" in err


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("fixmatch", {"cutmix_p": 1.5}, r"cutmix_p must be in \[0, 1\], got 1.5"),
        ("unimatch", {"fp_dropout": 1.0}, r"fp_dropout must be in \[0, 1\), got 1.0"),
        ("crossmatch", {"eta": -0.1}, r"eta must be in \[0, 1\], got -0.1"),
        ("semsim", {"query_temperature": 0}, r"query_temperature must be in \(0, inf\), got 0"),
        ("refguided", {"combine": "vote"}, r"combine must be one of"),
        ("unimatch", {"tau": 2}, r"tau must be in \[0, 1\], got 2"),
    ],
)
def test_method_option_out_of_range(case, capsys, method, options, message):
    from semiseg.cli import main

    write_job(case["dir"], method=method, method_options=options)
    with pytest.raises(InputError, match=r"job\.json: " + message):  # names the file and the problem
        _run(case["dir"])
    _assert_nothing_written(case["dir"])
    assert main(["train", "--job", str(case["dir"])]) == 2  # bad input, not an internal error
    assert "semiseg: error:" in capsys.readouterr().err
