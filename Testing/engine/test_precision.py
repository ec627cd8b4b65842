"""Mixed precision on the CPU and the prefetch thread: bf16 runs give finite losses and fp32
checkpoints, autocast is off where the CPU lacks bf16, the start event names the precision, and the
prefetch worker stops with the run (done, cancelled or failed) and keeps runs reproducible."""

from __future__ import annotations

import dataclasses
import json
import math
import threading

import numpy as np
import pytest
import torch
from test_methods_weak_strong import tiny_config, tiny_data

import semiseg.models.precision as precision_mod
from semiseg.errors import Cancelled, InputError
from semiseg.inference import Predictor
from semiseg.models import UNet2D, resolve_precision, set_precision
from semiseg.training.prefetch import Prefetcher
from semiseg.training.progress import ProgressLog
from semiseg.training.trainer import CancelToken, TrainData, Trainer


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "semiseg-prefetch"]


def trainer(tmp_path, method="unimatch", cancel=None, **kw) -> Trainer:
    cfg = dataclasses.replace(tiny_config(threads=1), **{"iterations": 3, **kw})
    return Trainer(
        cfg, method, {}, 3, tmp_path, log=ProgressLog(tmp_path / "progress.jsonl", stream=None), cancel=cancel
    )


def events(tmp_path, name: str) -> list[dict]:
    lines = (tmp_path / "progress.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def test_bf16_training_is_finite_and_its_checkpoint_predicts_in_fp32(tmp_path):
    t = trainer(tmp_path, precision="bf16")
    assert t.precision == "bf16" and t.model.compute_dtype == torch.bfloat16
    losses = []
    result = t.fit(tiny_data(), on_step=lambda it, last: losses.append(last["loss"]))
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses) and math.isfinite(result["loss"])
    assert events(tmp_path, "start")[0]["precision"] == "bf16"
    state = torch.load(t.checkpoint_path, weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state["model"].values())
    predictor = Predictor(t.checkpoint_path, device="cpu", precision="fp32")
    assert predictor.model.compute_dtype is None and all(p.dtype == torch.float32 for p in predictor.model.parameters())
    probs = predictor.probabilities(np.random.default_rng(0).random((2, 40, 36)).astype(np.float32))
    assert probs.dtype == np.float32 and np.allclose(probs.sum(0), 1, atol=1e-4)


def test_bf16_predictor_returns_fp32_probabilities_close_to_fp32(tmp_path):
    t = trainer(tmp_path, method="supervised", precision="fp32")
    t.fit(tiny_data())
    assert events(tmp_path, "start")[0]["precision"] == "fp32"
    volume = np.random.default_rng(0).random((2, 40, 36)).astype(np.float32)
    p32 = Predictor(t.checkpoint_path, device="cpu", precision="fp32").probabilities(volume)
    p16 = Predictor(t.checkpoint_path, device="cpu", precision="bf16").probabilities(volume)
    assert p16.dtype == np.float32 and np.abs(p16 - p32).max() < 0.05


def test_autocast_is_off_on_a_cpu_without_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_mod, "bf16_supported", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    t = trainer(tmp_path)  # precision "auto"
    assert t.precision == "fp32" and t.model.compute_dtype is None
    dtypes = set()
    t.model.inc.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    t.fit(tiny_data())
    assert dtypes == {torch.float32}
    assert events(tmp_path, "start")[0]["precision"] == "fp32"


def test_networks_under_bf16_return_fp32_logits():
    model = UNet2D(1, 3)
    set_precision([model], "bf16", torch.device("cpu"))
    feats = model.encode(torch.rand(2, 1, 32, 32))
    assert feats[0].dtype == torch.bfloat16
    logits, last = model.decode(feats, return_features=True)
    assert logits.dtype == torch.float32 and last.dtype == torch.float32


def test_prefetch_thread_stops_when_the_run_ends_is_cancelled_or_fails(tmp_path):
    assert not prefetch_threads()
    trainer(tmp_path / "done").fit(tiny_data())
    assert not prefetch_threads()

    token = CancelToken()
    t = trainer(tmp_path / "cancel", cancel=token, iterations=50)
    with pytest.raises(Cancelled):
        t.fit(tiny_data(), on_step=lambda it, last: token.set() if it == 2 else None)
    assert t.iteration == 2 and not prefetch_threads()

    data = tiny_data()
    no_unlabelled = TrainData(data.labeled, data.val, data.unlabeled.__class__(data.unlabeled.images[:0], None, []), 3)
    with pytest.raises(InputError, match="needs unlabelled slices"):  # raised in the worker, re-raised by the step
        trainer(tmp_path / "fails").fit(no_unlabelled)
    assert not prefetch_threads()


def test_prefetch_keeps_runs_reproducible(tmp_path):
    """Same seed, same losses; with the prefetch thread (fit) and without it (step by step)."""
    runs = []
    for name in ("a", "b"):
        losses: list[float] = []
        trainer(tmp_path / name, iterations=4).fit(tiny_data(), on_step=lambda it, last: losses.append(last["loss"]))
        runs.append(losses)
    t = trainer(tmp_path / "c", iterations=4)
    data = tiny_data()
    runs.append([t.step(data)["loss"] for _ in range(4)])
    assert runs[0] == runs[1] == runs[2]


def test_prefetcher_reraises_and_joins():
    def make(i: int) -> int:
        if i == 2:
            raise ValueError("boom")
        return i * 10

    with Prefetcher(make, 0, 5) as p:
        assert p.get() == 0 and p.get() == 10
        with pytest.raises(ValueError, match="boom"):
            p.get()
    assert not prefetch_threads()
