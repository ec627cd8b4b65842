"""Trainer: checkpoints load with weights_only, resume continues exactly, cancel keeps the last good checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from semiseg.errors import Cancelled, InputError
from semiseg.io.slices import SliceSet
from semiseg.job import load_job, run_job
from semiseg.training import TrainData, Trainer, load_checkpoint
from semiseg.training.checkpoint import save_checkpoint
from semiseg.training.config import TrainConfig
from semiseg.training.progress import ProgressLog
from semiseg.training.trainer import CancelToken, poly_lr

from enginetesting import write_job


def _data(n=6, size=32, classes=3):
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, classes, (n, size, size), generator=g)
    img = (lab.float()[:, None] / classes + 0.1 * torch.rand(n, 1, size, size, generator=g))
    empty = SliceSet(torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.long), [])
    return TrainData(SliceSet(img, lab, [("t", i) for i in range(n)]), empty, SliceSet(img.clone(), None, []), classes)


def _trainer(tmp_path, iterations=4, **kw):
    cfg = TrainConfig(
        iterations=iterations,
        size=32,
        batch_labeled=2,
        batch_unlabeled=2,
        val_every=0,
        checkpoint_every=2,
        device="cpu",
        **kw,
    )
    return Trainer(cfg, "supervised", {}, 3, tmp_path, log=ProgressLog(tmp_path / "progress.jsonl", stream=None))


def test_poly_schedule():
    assert poly_lr(0.01, 0, 100, 0.9) == pytest.approx(0.01)
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 0, 100, 0.9, warmup=10) == pytest.approx(0.001)


def test_checkpoint_loads_with_weights_only_and_holds_metadata(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.fit(_data())
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 4 and state["method_name"] == "supervised" and state["num_classes"] == 3
    assert state["train_config"]["size"] == 32
    events = [json.loads(line)["event"] for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "iteration" in events and events[-1] == "trained"


def test_resume_continues_exactly(tmp_path):
    data = _data()
    # one fixed thread count: a count chosen from the machine's load could differ between the runs,
    # and it changes the order of floating-point sums (semiseg.training.cpu)
    straight = _trainer(tmp_path / "a", iterations=4, threads=1)
    straight.fit(data)
    first = _trainer(tmp_path / "b", iterations=4, threads=1)
    for _ in range(2):
        first.step(data)
    first.save()
    resumed = _trainer(tmp_path / "c", iterations=4, threads=1)
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert resumed.iteration == 2
    resumed.fit(data)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_resume_refuses_other_method_and_warm_start_checks_classes(tmp_path):
    trainer = _trainer(tmp_path / "a")
    trainer.save()
    state = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    state["method_name"] = "other"
    save_checkpoint(state, tmp_path / "other.pt")  # a consistent checkpoint of another method (checksum recomputed)
    with pytest.raises(InputError, match="of method 'other'"):
        _trainer(tmp_path / "b").resume(tmp_path / "other.pt")
    cfg = TrainConfig(iterations=1, size=32, device="cpu")
    two = Trainer(cfg, "supervised", {}, 2, tmp_path / "c", log=ProgressLog(None, stream=None))
    with pytest.raises(InputError, match="checkpoint has 3 classes, this job has 2"):
        two.warm_start(tmp_path / "a" / "checkpoint.pt")


def test_newer_checkpoint_format_refused(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.save()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    state["format"] = 7
    torch.save(state, tmp_path / "new.pt")  # the format is checked before the checksum
    with pytest.raises(InputError, match=r"new\.pt: written by a newer SemiSegSlicer"):
        load_checkpoint(tmp_path / "new.pt")


def test_cancel_file_stops_and_saves_a_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, iterations=10)
    data = _data()

    def cancel_at_3(it, _):
        if it == 3:
            (tmp_path / "cancel").touch()

    with pytest.raises(Cancelled):
        trainer.fit(data, on_step=cancel_at_3)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 3  # saved on cancel, not the periodic one of 2


def test_job_cancel_writes_status_and_keeps_previous_checkpoint(toy_case):
    job_dir = write_job(
        toy_case["dir"],
        train={"iterations": 50, "size": 32, "batch_labeled": 2, "val_every": 0, "checkpoint_every": 1000},
    )
    job = load_job(job_dir)
    token = CancelToken()
    token.set()
    with pytest.raises(Cancelled):
        run_job(job, cancel=token)
    status = json.loads((toy_case["dir"] / "run" / "status.json").read_text())
    assert status["state"] == "cancelled" and status["exit_code"] == 3
    assert not (toy_case["dir"] / "run" / "checkpoint.pt").exists()
    assert not (toy_case["dir"] / "run" / "predictions").exists()


def test_sigterm_cancels_cli_with_exit_code_3(toy_case):
    job_dir = write_job(
        toy_case["dir"],
        train={
            "iterations": 100000,
            "size": 32,
            "batch_labeled": 2,
            "val_every": 0,
            "checkpoint_every": 5,
            "log_every": 1,
        },
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "semiseg", "train", "--job", str(job_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = job_dir / "run" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    state = load_checkpoint(ckpt)
    lines = [json.loads(line) for line in out.splitlines()]
    cancelled = lines[-1]
    assert cancelled["event"] == "cancelled"
    assert state["iteration"] == cancelled["iteration"] >= 5  # a checkpoint saved at the cancel, past the periodic one
    status = json.loads((job_dir / "run" / "status.json").read_text())
    assert status["state"] == "cancelled"
    events = [e["event"] for e in lines]
    assert events[0] == "setup" and events.index("preview") < events.index(
        "start"
    )  # the prior's preview, then training
