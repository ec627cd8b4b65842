"""Damaged files, wrong values, shared folders, signals and full disks (issue 13, items 13-23, 25, 26, 30, 31).

Each test reproduces a defect the issue reports and checks the engine's answer: exit code 2 (or an
:class:`InputError`) with a message naming the file or key, nothing written, or a consistent run folder.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from semiseg.contract import DEFAULT_METHOD, METHOD_LABELS
from semiseg.errors import Cancelled, CancelToken, InputError
from semiseg.job import Job, RunLock, check_axis, load_job, run_job
from semiseg.training.checkpoint import load_checkpoint, save_checkpoint
from semiseg.training.progress import ProgressLog

from enginetesting import ROOT, write_job

FAST = {
    "iterations": 2,
    "size": 32,
    "batch_labeled": 2,
    "batch_unlabeled": 2,
    "val_every": 0,
    "checkpoint_every": 1,
    "device": "cpu",
}


@pytest.fixture
def case(toy_case):
    write_job(toy_case["dir"], method="supervised", train=dict(FAST))
    return toy_case


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "semiseg", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def _nifti_copy(case, name: str) -> tuple[Path, bytes]:
    """The toy image as an uncompressed NIfTI in the job folder, and its bytes."""
    path = case["dir"] / name
    sitk.WriteImage(sitk.ReadImage(str(case["image"])), str(path))
    raw = path.read_bytes() if not name.endswith(".gz") else gzip.decompress(path.read_bytes())
    return path, raw


# -- 13, 14, 15: damaged NIfTI files -------------------------------------------------------------


@pytest.mark.parametrize("name", ["image.nii.gz", "image.nii"])
def test_truncated_nifti_is_refused(case, acdc, name):
    """Item 13: the issue's repro, a real ACDC volume cut short, was read as zeros and trained on."""
    raw = acdc("images").read_bytes()
    data = raw[: len(raw) // 3] if name.endswith(".gz") else gzip.decompress(raw)[: len(gzip.decompress(raw)) // 3]
    (case["dir"] / name).write_bytes(data)
    proc = _cli("train", "--image", case["dir"] / name, "--labels", case["labels"], "--out", case["dir"] / "run")
    assert proc.returncode == 2, proc.stderr
    assert f"{name}: is truncated" in proc.stderr
    assert not (case["dir"] / "run").exists()


@pytest.mark.parametrize("gz", [False, True])
def test_tiny_header_declaring_a_huge_volume_is_refused_before_reading(tmp_path, gz):
    """Item 14: 4096 x 4096 x 16 float32 (1 GiB) declared in a file of a few hundred bytes."""
    from semiseg.io.images import read_image

    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, 4096, 4096, 16, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, 16, 32)  # float32
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\0"
    data = bytes(header) + bytes(32)
    path = tmp_path / ("huge.nii.gz" if gz else "huge.nii")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert path.stat().st_size < 400
    with pytest.raises(InputError, match=r"huge\.nii(\.gz)?: is truncated: its header declares"):
        read_image(path)


@pytest.mark.parametrize("name", ["image.nii", "image.nii.gz"])
def test_nan_and_inf_in_nifti_are_refused(case, name):
    """Item 15: SimpleITK reads NaN and Inf voxels of a NIfTI file as 0."""
    path, raw = _nifti_copy(case, "image.nii")
    values = np.frombuffer(raw[352:], "<f4").copy()
    values[[10, 500]] = [np.nan, np.inf]
    data = raw[:352] + values.tobytes()
    path.unlink()
    (case["dir"] / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(case["dir"] / name)))).all()  # the defect
    write_job(case["dir"], image=name, method="supervised", train=dict(FAST))
    with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: holds 2 NaN or infinite voxel"):
        run_job(load_job(case["dir"]))
    assert not (case["dir"] / "run").exists()


# -- 16, 19: job.json values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"train": {**FAST, "iterations": "300"}}, "iterations"),
        ({"train": {**FAST, "iterations": 3.7}}, "iterations"),
        ({"train": {**FAST, "iterations": True}}, "iterations"),
        ({"train": {**FAST, "size": "64"}}, "size"),
        ({"train": {**FAST, "lr": "fast"}}, "lr"),
        ({"train": {**FAST, "lr": -1}}, "lr"),
        ({"train": {**FAST, "log_every": 0}}, "log_every"),
        ({"train": {**FAST, "checkpoint_every": -1}}, "checkpoint_every"),
        ({"train": {**FAST, "threads": -3}}, "threads"),
        ({"train": {**FAST, "amp": "yes"}}, "amp"),
        ({"predict": "no"}, "predict"),
        ({"classes": "abc"}, "classes"),
        ({"train": []}, "train"),
        ({"labeled_slices": "3,7"}, "labeled_slices"),
        ({"labeled_slices": [1, -2]}, "labeled_slices"),
        ({"format_version": "1"}, "format_version"),
        ({"axis": True}, "axis"),
        ({"unlabeled": "extra.nii.gz"}, "unlabeled"),
        ({"method_options": {"tau": "high"}, "method": "fixmatch"}, "tau"),
        ({"run_dir": 5}, "run_dir"),
    ],
)
def test_job_values_are_type_checked_naming_the_key(case, fields, key):
    """Items 16 and 19: each was a traceback, a silent reinterpretation, or an error after the run folder was made."""
    write_job(case["dir"], **{"method": "supervised", "train": dict(FAST), **fields})
    with pytest.raises(InputError, match=rf"job\.json: .*{key}") as caught:
        run_job(load_job(case["dir"]))
    assert "Traceback" not in str(caught.value)
    assert not (case["dir"] / "run").exists()


def test_bad_values_exit_2_through_the_cli_with_nothing_written(case):
    write_job(case["dir"], train={**FAST, "log_every": 0})
    proc = _cli("train", "--job", case["dir"])
    assert proc.returncode == 2 and "job.json: log_every must be in [1, inf), got 0" in proc.stderr, proc.stderr
    assert not (case["dir"] / "run").exists()


def test_bad_init_checkpoint_is_refused_before_the_run_folder_is_made(case):
    """Item 19: a bad init checkpoint left config.json, progress.jsonl and a failed status."""
    (case["dir"] / "old.pt").write_bytes(b"not a checkpoint")
    write_job(case["dir"], method="supervised", train=dict(FAST), init_checkpoint="old.pt")
    with pytest.raises(InputError, match=r"old\.pt: not a readable checkpoint"):
        run_job(load_job(case["dir"]))
    assert not (case["dir"] / "run").exists()


# -- 17: run_dir inside the job folder -----------------------------------------------------------


@pytest.mark.parametrize("run_dir", ["../../..", "../elsewhere", "/tmp/semiseg-escaped-run"])
def test_run_dir_outside_the_job_folder_is_refused_unless_allowed(case, run_dir):
    write_job(case["dir"], method="supervised", train=dict(FAST), run_dir=run_dir)
    with pytest.raises(
        InputError, match=r"job\.json: 'run_dir' .* lies outside the job folder.*--allow-outside-run-dir"
    ):
        load_job(case["dir"])
    proc = _cli("train", "--job", case["dir"])
    assert proc.returncode == 2 and "outside the job folder" in proc.stderr
    assert load_job(case["dir"], allow_outside_run_dir=True).run_dir.endswith(run_dir.strip("./"))


def test_allow_outside_run_dir_flag_runs_the_job(case, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "run"
    write_job(case["dir"], method="supervised", train=dict(FAST), run_dir=str(outside), predict=False)
    proc = _cli("train", "--job", case["dir"], "--allow-outside-run-dir")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((outside / "status.json").read_text())["state"] == "done"


def test_run_dir_inside_the_job_folder_is_accepted(case):
    write_job(case["dir"], method="supervised", train=dict(FAST), run_dir="runs/../runs/first")
    assert load_job(case["dir"]).run_dir == str(case["dir"] / "runs/../runs/first")


# -- 18: clear errors instead of tracebacks --------------------------------------------------------


def test_unwritable_train_out_exits_2(case):
    blocker = case["dir"] / "a_file"
    blocker.write_text("x")
    proc = _cli("train", "--job", case["dir"], "--out", blocker / "run")
    assert proc.returncode == 2, proc.stderr
    assert "a_file/run: cannot write the run folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def trained(case):
    write_job(case["dir"], method="supervised", train=dict(FAST), predict=False)
    run_job(load_job(case["dir"]), log=ProgressLog(case["dir"] / "progress.jsonl", stream=None))
    return case


def test_predict_out_naming_an_existing_file_exits_2(trained, tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    proc = _cli("predict", "--run", trained["dir"] / "run", "--image", trained["image"], "--out", target)
    assert proc.returncode == 2 and "taken.txt: exists and is not a folder" in proc.stderr, proc.stderr
    assert target.read_text() == "mine"


def test_checkpoint_edited_to_another_model_exits_2(trained, tmp_path):
    state = load_checkpoint(trained["dir"] / "run" / "checkpoint.pt")
    state["model_config"]["features"] = [8, 16, 32, 64, 128]  # consistent checksum, but not the weights' shapes
    save_checkpoint(state, tmp_path / "edited.pt")
    proc = _cli("predict", "--run", tmp_path / "edited.pt", "--image", trained["image"], "--out", tmp_path / "pred")
    assert proc.returncode == 2 and "edited.pt: checkpoint does not hold a usable model" in proc.stderr, proc.stderr


def test_resume_with_another_class_count_exits_2(trained):
    write_job(trained["dir"], method="supervised", train={**FAST, "iterations": 4}, classes=["bg", "a", "b", "c"])
    proc = _cli("train", "--job", trained["dir"], "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "checkpoint.pt: checkpoint has 3 classes, this job has 4" in proc.stderr and "Traceback" not in proc.stderr
    assert (
        json.loads((trained["dir"] / "run" / "status.json").read_text())["state"] == "done"
    )  # the finished run untouched


def test_unreadable_file_is_not_reported_as_missing(case, monkeypatch):
    from semiseg.io import images as imageio

    if os.geteuid() != 0:
        case["image"].chmod(0)
    else:  # root reads any file: the permission error is what open() raises for a user
        real_open = open

        def denied(path, *args, **kwargs):
            if Path(path) == case["image"]:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(imageio, "open", denied, raising=False)
    with pytest.raises(InputError, match=r"image\.nrrd: cannot be read \(Permission denied\)"):
        imageio.read_image(case["image"])


# -- 20: one training per run folder ---------------------------------------------------------------


def test_second_training_on_a_run_folder_is_refused_naming_the_holder(case):
    run_dir = case["dir"] / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from semiseg.job import RunLock; "
            f"lock = RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = _cli("train", "--job", case["dir"])
        assert proc.returncode == 2, proc.stderr
        assert f"run: is in use by another training (pid {holder.pid} on" in proc.stderr
        assert not (run_dir / "status.json").exists() and not (run_dir / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    run_job(load_job(case["dir"]), log=ProgressLog(None, stream=None))  # released when its holder died
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(InputError, match=rf"in use by another training \(pid {os.getpid()} on"):
            RunLock(tmp_path / "run").acquire()
    RunLock(tmp_path / "run").acquire().release()


# -- 21, 30: cancel in every phase, with a checkpoint -----------------------------------------------


class _CancelOn(ProgressLog):
    """A progress log that creates the run's cancel file when it sees ``event`` (optionally at ``iteration``)."""

    def __init__(self, run_dir: Path, event: str, iteration: int | None = None) -> None:
        super().__init__(None, stream=None)
        self.run_dir, self.event, self.iteration = run_dir, event, iteration

    def emit(self, event, **fields):
        if event == self.event and self.iteration in (None, fields.get("iteration")):
            (self.run_dir / "cancel").touch()
        return super().emit(event, **fields)


def test_cancel_while_predicting_stops_with_cancelled_status(case):
    """Item 21: the run finished with exit 0 and 'done' after a SIGTERM or cancel file during prediction."""
    write_job(case["dir"], method="supervised", train=dict(FAST), unlabeled=["image.nrrd"])
    run_dir = case["dir"] / "run"
    with pytest.raises(Cancelled, match="while predicting"):
        run_job(load_job(case["dir"]), log=_CancelOn(run_dir, "trained"))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "cancelled" and status["exit_code"] == 3
    assert not list(run_dir.glob("predictions/*/labels.*"))
    assert load_checkpoint(run_dir / "checkpoint.pt")["iteration"] == FAST["iterations"]


def test_sigterm_token_is_obeyed_while_predicting(case):
    """The same through the token the CLI's SIGTERM handler sets, between two predicted volumes."""
    write_job(case["dir"], method="supervised", train=dict(FAST), unlabeled=["image.nrrd"])
    token = CancelToken()

    class SetOnPredicted(ProgressLog):
        def emit(self, event, **fields):
            if event == "predicted":
                token.set()
            return super().emit(event, **fields)

    with pytest.raises(Cancelled):
        run_job(load_job(case["dir"]), log=SetOnPredicted(None, stream=None), cancel=token)
    run_dir = case["dir"] / "run"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"
    assert [p.name for p in run_dir.glob("predictions/*")] == ["image"]  # the first volume, not the second


def test_cancel_before_the_first_periodic_checkpoint_keeps_one(case):
    """Item 30: checkpoint_every 500 of 1000 and a cancel at iteration 3 kept nothing."""
    write_job(
        case["dir"], method="supervised", train={**FAST, "iterations": 1000, "checkpoint_every": 500, "log_every": 1}
    )
    run_dir = case["dir"] / "run"
    with pytest.raises(Cancelled):
        run_job(load_job(case["dir"]), log=_CancelOn(run_dir, "iteration", 3))
    assert load_checkpoint(run_dir / "checkpoint.pt")["iteration"] == 3
    resumed = load_job(case["dir"])
    resumed.train["iterations"] = 5
    assert run_job(resumed, resume=True, log=ProgressLog(None, stream=None))["iteration"] == 5


# -- 22: full disk ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _small_disk(path: Path, size: int, monkeypatch):
    """A tmpfs of ``size`` bytes at ``path`` where mounting works (root), else a disk that fills on the second
    checkpoint."""
    path.mkdir()
    try:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
            ).returncode
            == 0
        )
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        import semiseg.training.checkpoint as checkpoint

        writes = []
        real_fsync = os.fsync

        def fsync(fd):
            writes.append(fd)
            if len(writes) >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    try:
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def test_full_disk_fails_cleanly_keeping_the_last_good_checkpoint(case, tmp_path_factory, monkeypatch):
    """Item 22: status stayed 'running', exit 1 with torch's 'unexpected pos', and .tmp files were left."""
    probe = tmp_path_factory.mktemp("probe")
    write_job(case["dir"], method="supervised", train=dict(FAST), predict=False)
    run_job(load_job(case["dir"]), log=ProgressLog(None, stream=None))
    size = (case["dir"] / "run" / "checkpoint.pt").stat().st_size
    disk = probe / "disk"
    with _small_disk(disk, int(size * 1.5) + 256 * 1024, monkeypatch):
        write_job(case["dir"], method="supervised", train={**FAST, "iterations": 3}, run_dir=str(disk / "run"))
        with pytest.raises(InputError, match=rf"no space left on {disk / 'run'}"):
            run_job(load_job(case["dir"], allow_outside_run_dir=True))
        status = json.loads((disk / "run" / "status.json").read_text())
        assert status["state"] == "failed" and status["exit_code"] == 2 and "no space left on" in status["message"]
        assert load_checkpoint(disk / "run" / "checkpoint.pt")["iteration"] == 1
        assert not [p.name for p in (disk / "run").rglob("*") if ".tmp" in p.name]


# -- 23: checkpoint checksum -------------------------------------------------------------------------


def test_checkpoint_with_one_flipped_byte_is_refused(trained, tmp_path):
    path = trained["dir"] / "run" / "checkpoint.pt"
    weight = load_checkpoint(path)["model"]
    name = max((k for k in weight if weight[k].is_contiguous()), key=lambda k: weight[k].numel())  # stored as laid out
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(weight[name].numpy().tobytes()[:1024])
    assert at > 0 and weight[name].numel() > 250
    raw[at + 1000] ^= 0x01
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(raw))
    assert (
        torch.load(damaged, weights_only=True)["model"][name].flatten()[250] != weight[name].flatten()[250]
    )  # loads silently
    with pytest.raises(InputError, match=r"damaged\.pt: is damaged or was edited"):
        load_checkpoint(damaged)
    proc = _cli("predict", "--run", damaged, "--image", trained["image"], "--out", tmp_path / "pred")
    assert proc.returncode == 2 and "damaged.pt: is damaged or was edited" in proc.stderr


# -- 25: the slicing axis ----------------------------------------------------------------------------


def test_axis_across_painted_slices_is_refused(case):
    """Item 25: labels on K slices 1 and 4 with axis 0 made 24 partly painted I slices 'labelled'."""
    write_job(case["dir"], method="supervised", train=dict(FAST), axis=0)
    with pytest.raises(
        InputError, match=r"labels\.nrrd: the labels lie on 2 slice\(s\) along axis 2 \(K\), but axis 0 \(I\)"
    ):
        run_job(load_job(case["dir"]))
    assert not (case["dir"] / "run").exists()


def test_axis_of_dense_labels_is_the_users_choice(toy_case):
    for axis in (0, 1, 2):  # a structure labelled on every slice: any axis is legitimate
        check_axis(toy_case["full_labels"], axis, "labels.nrrd")
    single = np.zeros_like(toy_case["full_labels"])
    single[3] = toy_case["full_labels"][3]
    check_axis(single, 2, "labels.nrrd")
    with pytest.raises(InputError, match="lie on 1 slice"):
        check_axis(single, 1, "labels.nrrd")


# -- 26: one default method ----------------------------------------------------------------------------


def test_one_default_method_for_every_front_end():
    from semiseg.cli import _parser
    from semiseg.methods import METHODS

    assert set(METHOD_LABELS) == set(METHODS)
    assert Job(image="a", labels="b").method == DEFAULT_METHOD
    train = _parser(with_bench=False).parse_args(["train", "--image", "a", "--labels", "b", "--out", "c"])
    assert train.method == DEFAULT_METHOD
    from semiseg_web.state import TrainState

    assert TrainState().method == DEFAULT_METHOD
    module = ast.parse((ROOT / "SemiSegSlicer" / "SemiSegSlicer.py").read_text())
    imported = {
        a.name
        for n in ast.walk(module)
        if isinstance(n, ast.ImportFrom) and n.module == "semiseg.contract"
        for a in n.names
    }
    assert {"DEFAULT_METHOD", "METHOD_LABELS"} <= imported
    literals = {n.value for n in ast.walk(module) if isinstance(n, ast.Constant)}
    assert not literals & (set(METHOD_LABELS) - {"supervised"}), "the module names no method itself"


# -- 31: --help and bad input without torch --------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["train", "--job", "{missing}"], ["train", "--job", "{typo}"]]
)
def test_help_and_bad_input_do_not_import_torch(tmp_path, argv):
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "job.json").write_text(
        json.dumps({"format_version": 1, "image": "i.nii", "labels": "l.nii", "train": {"iterations": "300"}})
    )
    argv = [a.format(missing=tmp_path / "missing", typo=tmp_path / "typo") for a in argv]
    code = (
        "import sys\nfrom semiseg.cli import main\ntry:\n    code = main(%r)\nexcept SystemExit as e:\n    code "
        "= e.code\n"
        "print(code, sorted(m for m in ('torch', 'monai') if m in sys.modules))" % argv
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    last = proc.stdout.strip().splitlines()[-1]
    assert last in ("0 []", "2 []"), (last, proc.stderr)


def test_contract_is_torch_free():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, semiseg.contract, semiseg.errors; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "False", proc.stderr
