"""Tests of the weak-to-strong methods: fixmatch, unimatch, crossmatch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from semiseg.blocks.schedule import TrainProgress
from semiseg.errors import InputError
from semiseg.inference import Predictor
from semiseg.io.slices import SliceSet
from semiseg.methods import METHODS, Batch, build_method
from semiseg.models import UNet2D
from semiseg.training.config import TrainConfig
from semiseg.training.progress import ProgressLog
from semiseg.training.trainer import TrainData, Trainer

NAMES = ["fixmatch", "unimatch", "crossmatch"]
UNSUP_TERMS = {"fixmatch": {"u"}, "unimatch": {"s1", "s2", "fp"}, "crossmatch": {"s1", "s2", "tkd", "dkd"}}


def discs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, size, size) of a bright disc in a ring on a dim background, and their labels."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, labels = [], []
    for _ in range(n):
        cy, cx = (size * (0.35 + 0.3 * torch.rand(2, generator=g))).tolist()
        r = torch.hypot(yy - cy, xx - cx)
        lab = torch.zeros(size, size, dtype=torch.long)
        lab[r < size * 0.25] = 2
        lab[r < size * 0.15] = 1
        img = 0.2 + 0.6 * (lab == 1) + 0.35 * (lab == 2) + 0.05 * torch.randn(size, size, generator=g)
        images.append(img.clamp(0, 1)[None])
        labels.append(lab)
    return torch.stack(images).float(), torch.stack(labels)


def test_registry_and_configs():
    assert set(NAMES) <= set(METHODS)
    assert (
        METHODS["fixmatch"].unlabeled_batches
        == METHODS["unimatch"].unlabeled_batches
        == METHODS["crossmatch"].unlabeled_batches
        == 2
    )
    assert METHODS["fixmatch"].Config().cutmix_p == METHODS["unimatch"].Config().cutmix_p == 0.5
    for name in NAMES:
        cfg = METHODS[name].Config()
        assert (cfg.tau, cfg.warmup, cfg.rampup, cfg.ema) == (0.95, 0.0, 0.0, 0.0)  # the papers' settings
    cm = METHODS["crossmatch"].Config()
    assert (cm.weak_dropout, cm.strong_dropout, cm.eta) == (0.25, 0.75, 0.3)
    assert METHODS["unimatch"].Config().fp_dropout == 0.5
    with pytest.raises(InputError, match="valid keys"):
        build_method("unimatch", {"taus": 0.9}, 3, UNet2D(1, 3))
    for name, bad in [
        ("fixmatch", {"tau": 2.0}),
        ("fixmatch", {"ema": 1.0}),
        ("unimatch", {"fp_dropout": 1.0}),
        ("unimatch", {"warmup": 0.8, "rampup": 0.5}),
        ("crossmatch", {"strong_dropout": 1.2}),
        ("crossmatch", {"eta": -0.1}),
        ("crossmatch", {"cutmix_p": 1.5}),
    ]:
        with pytest.raises(InputError):
            build_method(name, bad, 3, UNet2D(1, 3))


# --------------------------------------------------------------------------- masking through the methods


class TableNet(nn.Module):
    """A fake network whose logits are parameters picked by batch size: lets a test craft every stream."""

    def __init__(self, tables: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.tables = nn.ParameterDict({str(k): nn.Parameter(v.clone()) for k, v in tables.items()})

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]

    def decode(self, feats):
        return self.tables[str(feats[0].shape[0])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


S = 8


def confident_left() -> torch.Tensor:
    """(3, S, S) logits confident (class 1) on the left half, uniform (p = 1/3) on the right half."""
    t = torch.zeros(3, S, S)
    t[1, :, : S // 2] = 10.0
    return t


# method -> (labelled batch, unlabelled batch, {table size: rows that are pseudo-label sources},
#            {table size: rows that are pure students}, {table size: rows whose right half must get no gradient})
LAYOUT = {
    "fixmatch": (1, 1, {3: [1], 1: [0]}, {3: [2]}, {3: [2]}),  # forward [x_l, x_w, x_s]; mix
    "unimatch": (1, 1, {3: [1], 1: [0]}, {3: [2], 2: [0, 1]}, {3: [2], 2: [0, 1]}),  # decode [l, w, fp]; [s1, s2]; mix
    "crossmatch": (2, 1, {5: [2, 3, 4], 3: [0, 1, 2]}, {4: [0, 1, 2, 3]}, {4: [0, 1, 2, 3], 5: [3, 4]}),
}


@pytest.mark.parametrize(
    "name, options",
    [
        ("fixmatch", {"cutmix_p": 0.0}),
        ("fixmatch", {"cutmix_p": 1.0}),
        ("unimatch", {"cutmix_p": 0.0}),
        ("unimatch", {"cutmix_p": 1.0}),
        ("crossmatch", {"cutmix_p": 0.0}),
        ("crossmatch", {"cutmix_p": 1.0}),
    ],
)
def test_pixels_below_tau_contribute_nothing_in_methods(name, options):
    """Changing a student's logits on unconfident pixels changes neither the loss nor the gradient there.

    With CutMix, the mixing batch's pseudo-labels are confident on the same left half, so the
    confident pixels stay the left half wherever the box lands.
    """
    n_l, n_u, sources, students, no_grad_rows = LAYOUT[name]
    g = torch.Generator().manual_seed(0)
    tables = {k: torch.randn(k, 3, S, S, generator=g) for k in set(sources) | set(students)}
    for k, rows in sources.items():
        for r in rows:
            tables[k][r] = confident_left()
    batch = Batch(
        torch.rand(n_l, 1, S, S), torch.randint(0, 3, (n_l, S, S)), torch.rand(n_u, 1, S, S), torch.rand(n_u, 1, S, S)
    )
    results = []
    for change in (False, True):
        t = {k: v.clone() for k, v in tables.items()}
        if change:
            for k, rows in students.items():
                for r in rows:
                    t[k][r, :, :, S // 2 :] = 5 * torch.randn(3, S, S // 2, generator=g)
        net = TableNet(t)
        method = build_method(name, options, 3, net)
        torch.manual_seed(1)
        out = method.loss(net, batch, TrainProgress(0, 10))
        out.total.backward()
        results.append((out, {k: p.grad for k, p in net.tables.items()}))
    (a, ga), (b, gb) = results
    assert float(a.total.detach()) == pytest.approx(float(b.total.detach()), abs=1e-6)
    for term in UNSUP_TERMS[name]:
        assert a.terms[term] == pytest.approx(b.terms[term], abs=1e-6)
    assert a.stats["mask_ratio"] == pytest.approx(0.5)
    for k, rows in no_grad_rows.items():
        for r in rows:
            assert torch.all(ga[str(k)][r, :, :, S // 2 :] == 0) and torch.all(gb[str(k)][r, :, :, S // 2 :] == 0)
    for k, rows in students.items():  # the confident half does train the students
        assert all(ga[str(k)][r, :, :, : S // 2].abs().sum() > 0 for r in rows)


# --------------------------------------------------------------------------- with the real UNet


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_and_falls(name):
    """tau = 0 makes every pixel count from the first step, so the terms in the total do not change."""
    torch.manual_seed(0)
    x_l, y_l = discs(2, 32, 1)
    x_u, _ = discs(2, 32, 2)
    x_m, _ = discs(2, 32, 3)
    batch = Batch(x_l, y_l, x_u, x_m)
    model = UNet2D(1, 3)
    method = build_method(name, {"tau": 0.0}, 3, model)
    opt = torch.optim.Adam(list(model.parameters()) + method.trainable_parameters(), lr=3e-3)
    losses = []
    for it in range(10):
        out = method.loss(model, batch, TrainProgress(it, 10))
        assert torch.isfinite(out.total)
        assert {"sup"} | UNSUP_TERMS[name] == set(out.terms)
        assert out.stats["mask_ratio"] == 1.0 and out.stats["unsup_weight"] == 1.0
        opt.zero_grad()
        out.total.backward()
        opt.step()
        method.after_step(model, TrainProgress(it, 10))
        losses.append(float(out.total.detach()))
        assert all(0.0 < v < 2.0 for v in out.terms.values())
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


@pytest.mark.parametrize("name", NAMES)
def test_warmup_trains_labelled_only(name):
    x_l, y_l = discs(2, 32, 1)
    batch = Batch(x_l, y_l, torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32))
    model = UNet2D(1, 3)
    method = build_method(name, {"warmup": 0.5, "rampup": 0.2}, 3, model)
    out = method.loss(model, batch, TrainProgress(4, 10))
    assert set(out.terms) == {"sup"} and out.stats["unsup_weight"] == 0.0
    assert float(out.total.detach()) == pytest.approx(
        out.terms["sup"]
    )  # the warm-up is the supervised baseline (pseudo.blend)
    out = method.loss(model, batch, TrainProgress(6, 10))
    assert out.stats["unsup_weight"] == pytest.approx(math.exp(-5 * 0.5**2))
    assert UNSUP_TERMS[name] <= set(out.terms)


@pytest.mark.parametrize("name", NAMES)
def test_ema_teacher_option(name):
    x_l, y_l = discs(2, 32, 1)
    batch = Batch(x_l, y_l, torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32))
    model = UNet2D(1, 3)
    method = build_method(name, {"ema": 0.99}, 3, model)
    assert method.trainable_parameters() == []
    assert any(k.startswith("teacher.model.") for k in method.state_dict())
    out = method.loss(model, batch, TrainProgress(0, 10))
    out.total.backward()
    method.after_step(model, TrainProgress(0, 10))
    assert int(method.teacher.num_updates) == 1
    assert all(p.grad is None for p in method.teacher.parameters())


# --------------------------------------------------------------------------- through the trainer


def tiny_data(size: int = 32) -> TrainData:
    x_l, y_l = discs(3, size, 1)
    x_v, y_v = discs(2, size, 2)
    x_u, _ = discs(5, size, 3)
    return TrainData(
        SliceSet(x_l, y_l, [("a", i) for i in range(3)]),
        SliceSet(x_v, y_v, [("a", i) for i in range(3, 5)]),
        SliceSet(x_u, None, [("b", i) for i in range(5)]),
        3,
    )


def tiny_config(**kw) -> TrainConfig:
    return TrainConfig(
        iterations=2,
        size=32,
        batch_labeled=2,
        batch_unlabeled=2,
        device="cpu",
        amp=False,
        val_every=2,
        checkpoint_every=0,
        log_every=1,
        **kw,
    )


@pytest.mark.parametrize("name", NAMES)
def test_trainer_smoke_and_predictor(name, tmp_path):
    trainer = Trainer(tiny_config(), name, {}, 3, tmp_path, log=ProgressLog(tmp_path / "progress.jsonl", stream=None))
    result = trainer.fit(tiny_data())
    assert result["iteration"] == 2 and math.isfinite(result["loss"])
    assert UNSUP_TERMS[name] <= set(result["terms"]) and "mask_ratio" in result["stats"]
    predictor = Predictor(trainer.checkpoint_path, device="cpu")
    volume = np.random.default_rng(0).random((3, 40, 36)).astype(np.float32)
    probs = predictor.probabilities(volume, axis=2)
    assert probs.shape == (3, 3, 40, 36) and np.allclose(probs.sum(0), 1.0, atol=1e-4)


def test_resume_restores_ema_teacher(tmp_path):
    log = ProgressLog(None, stream=None)
    first = Trainer(tiny_config(), "unimatch", {"ema": 0.9}, 3, tmp_path / "a", log=log)
    first.fit(tiny_data())
    second = Trainer(tiny_config(), "unimatch", {"ema": 0.9}, 3, tmp_path / "b", log=log)
    second.resume(first.checkpoint_path)
    a, b = first.method.state_dict(), second.method.state_dict()
    assert int(b["teacher.num_updates"]) == 2
    assert all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# --------------------------------------------------------------------------- reference-guided labels as an extra source


def test_agreeing_zeroes_the_confidence_where_the_labels_differ():
    from semiseg.blocks.pseudo import PseudoLabels

    y = PseudoLabels(torch.tensor([[[0.99, 0.98, 0.97]]]), torch.tensor([[[1, 2, 0]]]))
    kept = y.agreeing(torch.tensor([[[1, 1, 0]]]))
    assert kept.label.tolist() == y.label.tolist()
    assert kept.confidence.tolist() == [[[pytest.approx(0.99), 0.0, pytest.approx(0.97)]]]
    assert kept.mask(0.5).tolist() == [[[1.0, 0.0, 1.0]]]


@pytest.mark.parametrize("name", NAMES + ["semsim"])
def test_references_option_keeps_a_subset_of_the_pseudo_labels(name):
    """The same step with and without references: the forward passes are the same, so the kept
    pixels with references are a subset; the labelled references fill the method's bank. The
    network is made to predict class 1 everywhere, so its labels disagree with the references on
    the background."""
    x_l, y_l = discs(2, 32, 1)
    batch = Batch(x_l, y_l, discs(2, 32, 2)[0], discs(2, 32, 3)[0])
    ratios = {}
    for references in (False, True):
        torch.manual_seed(0)
        model = UNet2D(1, 3)
        with torch.no_grad():
            model.head.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))
        method = build_method(name, {"tau": 0.3, "references": references}, 3, model)  # confidences are >= 1/3
        torch.manual_seed(1)
        out = method.loss(model, batch, TrainProgress(0, 10))
        assert torch.isfinite(out.total)
        ratios[references] = out.stats["mask_ratio"]
        if references:
            assert int(method.references.count.sum()) > 0 and any(
                k.startswith("references.") for k in method.state_dict()
            )
        else:
            assert method.references is None
    assert ratios[False] == 1.0 and ratios[True] < 0.9


def test_refguided_refuses_the_references_option():
    with pytest.raises(ValueError, match="combine"):
        build_method("refguided", {"references": True}, 3, UNet2D(1, 3))
