"""Reference-guided pseudo-labels: nearest-reference labels, chunking, the bank, the method, trainer smoke."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semiseg.blocks.refbank import ReferenceGuidedLabeler, grid_references, scores_to_label, upsample_scores
from semiseg.blocks.schedule import TrainProgress
from semiseg.inference import Predictor
from semiseg.io.slices import SliceSet
from semiseg.methods import METHODS, Batch, build_method
from semiseg.methods.refguided import combine_labels
from semiseg.models import UNet2D
from semiseg.training import TrainData, Trainer
from semiseg.training.config import TrainConfig
from semiseg.training.progress import ProgressLog


def _toy(n_ref=60, n_query=45, dim=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    refs = torch.randn(n_ref, dim, generator=g)
    cls = torch.randint(0, classes, (n_ref,), generator=g)
    return refs, cls, torch.randn(n_query, dim, generator=g)


def _brute_force(refs, cls, queries, classes=4):
    """Nearest neighbour with plain cdist on unit vectors; per-class best cosine = 1 - d^2 / 2."""
    r, q = F.normalize(refs, dim=1), F.normalize(queries, dim=1)
    d = torch.cdist(q, r)
    label = cls[d.argmin(1)]
    best = torch.stack([(1 - d[:, cls == c] ** 2 / 2).max(1).values for c in range(classes)], 1)
    top = best.topk(2, dim=1).values
    return label, top[:, 0] - top[:, 1]


def test_labels_equal_brute_force_nearest_neighbour():
    refs, cls, queries = _toy()
    expected, margin = _brute_force(refs, cls, queries)
    labeler = ReferenceGuidedLabeler(4, 8, bank_size=0)
    label, got_margin = labeler.label(queries, extra=(refs, cls), chunk=None)
    assert torch.equal(label, expected)
    torch.testing.assert_close(got_margin, margin, atol=1e-5, rtol=0)
    # the same references held in the bank instead of passed in, or split between both
    banked = ReferenceGuidedLabeler(4, 8, bank_size=64, per_update=64)
    banked.update(refs[:30], cls[:30])
    assert torch.equal(banked.label(queries, extra=(refs[30:], cls[30:]))[0], expected)
    banked.update(refs[30:], cls[30:])
    assert torch.equal(banked.label(queries)[0], expected)


@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 50, 1000])
def test_chunked_equals_unchunked(chunk):
    refs, cls, queries = _toy(n_ref=90, n_query=70, seed=1)
    labeler = ReferenceGuidedLabeler(4, 8, bank_size=0)
    full = labeler.class_scores(queries, extra=(refs, cls), chunk=None)
    part = labeler.class_scores(queries, extra=(refs, cls), chunk=chunk)
    torch.testing.assert_close(part, full, atol=1e-6, rtol=0)
    assert torch.equal(scores_to_label(part)[0], scores_to_label(full)[0])


def test_spatial_queries_keep_their_grid():
    refs, cls, _ = _toy()
    maps = torch.randn(2, 8, 5, 6)
    labeler = ReferenceGuidedLabeler(4, 8, bank_size=0)
    scores = labeler.class_scores(maps, extra=(refs, cls), chunk=7)
    assert scores.shape == (2, 4, 5, 6)
    flat = labeler.class_scores(maps.permute(0, 2, 3, 1).reshape(-1, 8), extra=(refs, cls))
    torch.testing.assert_close(scores.permute(0, 2, 3, 1).reshape(-1, 4), flat)


def test_classes_without_references():
    labeler = ReferenceGuidedLabeler(3, 4, bank_size=0)
    q = torch.randn(10, 4)
    refs = torch.randn(5, 4)
    label, margin = labeler.label(q, extra=(refs, torch.zeros(5, dtype=torch.long)))
    best = (torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(refs, dim=1).T).max(1).values
    # with a single candidate class the margin is its best cosine + 1 (the absent classes count as -1);
    # the best cosine of random references can be negative, so the margin is not always >= 1
    assert (label == 0).all()
    torch.testing.assert_close(margin, best + 1.0, atol=1e-5, rtol=1e-5)
    label, margin = labeler.label(q)  # nothing at all: nothing is reliable
    assert (label == 0).all() and (margin == 0).all()
    scores = labeler.class_scores(q, extra=(torch.randn(5, 4), torch.tensor([0, 0, 2, 2, 2])))
    assert torch.isinf(scores[:, 1]).all() and (scores_to_label(scores)[0] != 1).all()


def test_bank_is_bounded_class_balanced_fifo_and_round_trips():
    g = torch.Generator().manual_seed(0)
    labeler = ReferenceGuidedLabeler(3, 6, bank_size=16, per_update=5)
    for _ in range(7):  # class 0 floods every batch, class 1 is rare, class 2 absent
        emb = torch.randn(110, 6, generator=g)
        cls = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(10, dtype=torch.long)])
        before = labeler.count.clone()
        labeler.update(emb, cls)
        assert (labeler.count - before <= 5).all()
    assert labeler.count.tolist() == [16, 16, 0]  # bounded, and class 0 took no room from class 1
    assert labeler.bank.shape == (3, 16, 6)
    torch.testing.assert_close(labeler.bank[:2].norm(dim=-1), torch.ones(2, 16))
    # FIFO: the most recent embeddings remain
    fifo = ReferenceGuidedLabeler(1, 2, bank_size=3, per_update=10)
    for i in range(5):
        fifo.update(torch.tensor([[1.0, float(i)]]), torch.zeros(1, dtype=torch.long))
    kept = sorted(round(float(v[1] / v[0]), 4) for v in fifo.bank[0])
    assert kept == [2.0, 3.0, 4.0]
    # state_dict round trip: same bank, same labels
    fresh = ReferenceGuidedLabeler(3, 6, bank_size=16, per_update=5)
    fresh.load_state_dict(labeler.state_dict())
    q = torch.randn(20, 6, generator=g)
    assert torch.equal(fresh.label(q)[0], labeler.label(q)[0])
    assert torch.equal(fresh.bank, labeler.bank) and torch.equal(fresh.ptr, labeler.ptr)


def test_grid_references_keep_pure_cells():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2, :2] = 1  # a pure class-1 cell on the 2x2 grid
    labels[0, 2:, 2:] = torch.tensor([[1, 2], [2, 2]])  # 3/4 class 2
    labels[0, :2, 2:] = torch.tensor([[1, 2], [2, 1]])  # half and half
    feats = torch.randn(1, 5, 2, 2)
    emb, cls = grid_references(feats, labels, 3, min_purity=0.75)
    assert cls.tolist() == [1, 0, 2] and emb.shape == (3, 5)
    assert len(grid_references(feats, labels, 3, min_purity=0.5)[1]) == 4
    labeler = ReferenceGuidedLabeler(3, 5, bank_size=4, min_purity=0.75)
    labeler.update(feats, labels)  # maps and labels: the same references as above
    assert labeler.count.tolist() == [1, 1, 1]
    torch.testing.assert_close(labeler.bank[2, 0], F.normalize(feats[0, :, 1, 1], dim=0))


def test_bilinear_upsampling_keeps_missing_classes_out():
    scores = torch.randn(2, 3, 4, 4).clamp(-1, 1)
    scores[:, 2] = float("-inf")
    up = upsample_scores(scores, (16, 16))
    assert up.shape == (2, 3, 16, 16) and torch.isinf(up[:, 2]).all() and torch.isfinite(up[:, :2]).all()


# -- the method --------------------------------------------------------------------------------
def _batch(size=32, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = torch.zeros(n, size, size, dtype=torch.long)
    lab[:, size // 4 : size // 2, size // 4 : 3 * size // 4] = 1
    lab[:, size // 2 : 3 * size // 4, size // 4 : 3 * size // 4] = 2
    img = lab.float()[:, None] / 3 + 0.05 * torch.rand(n, 1, size, size, generator=g)
    return Batch(
        img,
        lab,
        img.flip(-1) + 0.05 * torch.rand(n, 1, size, size, generator=g),
        img.flip(-2) + 0.05 * torch.rand(n, 1, size, size, generator=g),
    )


def test_refguided_registered_with_two_unlabelled_batches():
    assert METHODS["refguided"].unlabeled_batches == 2
    cfg = METHODS["refguided"].Config()
    assert (cfg.combine, cfg.min_margin, cfg.cutmix_p) == ("agree", 0.0, 0.5)


@pytest.mark.parametrize("combine, cutmix_p", [("alone", 0.0), ("agree", 0.0), ("union", 0.0), ("agree", 1.0)])
def test_refguided_loss_is_finite_and_falls_on_a_fixed_batch(combine, cutmix_p):
    torch.manual_seed(0)
    model = UNet2D(1, 3)
    opts = {
        "warmup": 0.0,
        "rampup": 0.0,
        "min_margin": 0.0,
        "combine": combine,
        "bank_size": 64,
        "per_update": 16,
        "tau": 0.0,
        "cutmix_p": cutmix_p,
    }
    method = build_method("refguided", opts, 3, model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch, losses = _batch(), []
    for step in range(10):
        torch.manual_seed(7)
        out = method.loss(model, batch, TrainProgress(step, 10))
        assert torch.isfinite(out.total) and all(np.isfinite(v) for v in out.terms.values())
        assert out.stats["mask_ratio"] > 0 and out.terms["ref_ce"] > 0
        opt.zero_grad()
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
    print(combine, "refguided losses", [round(v, 4) for v in losses])
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert (method.labeler.count <= 64).all() and method.labeler.count.sum() > 0


def test_refguided_warmup_is_supervised_only():
    model = UNet2D(1, 3)
    method = build_method("refguided", {}, 3, model)
    out = method.loss(model, _batch(), TrainProgress(0, 10))
    assert set(out.terms) == {"sup"} and int(method.labeler.count.sum()) == 0
    b = _batch()
    label, margin, logits = method.pseudo_labels(model, b.x_l, b.y_l, b.x_u)
    assert label.shape == (2, 32, 32) and margin.shape == (2, 32, 32) and logits.shape == (2, 3, 32, 32)
    assert (margin >= 0).all() and int(method.labeler.count.sum()) > 0


def test_combine_modes():
    g = torch.Generator().manual_seed(0)
    label, own = torch.randint(0, 3, (2, 2, 8, 8), generator=g)
    margin, conf = torch.rand(2, 2, 8, 8, generator=g)
    _, alone = combine_labels(label, margin, own, conf, "alone", 0.3, 0.9)
    t_agree, agree = combine_labels(label, margin, own, conf, "agree", 0.3, 0.9)
    t_union, union = combine_labels(label, margin, own, conf, "union", 0.3, 0.9)
    assert torch.equal(alone, (margin >= 0.3).float()) and torch.equal(t_agree, label)
    assert (agree <= alone).all() and (union >= alone).all()
    assert torch.equal(agree.bool(), (margin >= 0.3) & (label == own))
    confident = conf >= 0.9
    assert torch.equal(t_union[confident], own[confident]) and torch.equal(t_union[~confident], label[~confident])
    with pytest.raises(ValueError):
        combine_labels(label, margin, own, conf, "vote", 0.3, 0.9)


def _data(n=6, size=32, classes=3):
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, classes, (n, size, size), generator=g)
    img = lab.float()[:, None] / classes + 0.1 * torch.rand(n, 1, size, size, generator=g)
    val = SliceSet(img[:2].clone(), lab[:2].clone(), [("v", i) for i in range(2)])
    return TrainData(
        SliceSet(img, lab, [("t", i) for i in range(n)]), val, SliceSet(img.flip(-1).clone(), None, []), classes
    )


def test_refguided_trains_two_steps_and_predicts(tmp_path):
    cfg = TrainConfig(
        iterations=2,
        size=32,
        batch_labeled=2,
        batch_unlabeled=2,
        val_every=1,
        checkpoint_every=0,
        device="cpu",
        amp=False,
    )
    opts = {"warmup": 0.0, "rampup": 0.0, "bank_size": 32, "ema": 0.9}
    trainer = Trainer(cfg, "refguided", opts, 3, tmp_path, log=ProgressLog(tmp_path / "progress.jsonl", stream=None))
    result = trainer.fit(_data())
    assert result["iteration"] == 2 and np.isfinite(result["loss"])
    assert int(trainer.method.labeler.count.sum()) > 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"labeler.bank", "labeler.count", "labeler.ptr"} <= set(state["method"])
    resumed = Trainer(cfg, "refguided", opts, 3, tmp_path / "again", log=ProgressLog(None, stream=None))
    resumed.resume(tmp_path / "checkpoint.pt")
    assert torch.equal(resumed.method.labeler.bank, trainer.method.labeler.bank)
    assert torch.equal(resumed.method.labeler.count, trainer.method.labeler.count)
    predictor = Predictor(tmp_path / "checkpoint.pt", device="cpu", batch_size=4)
    probs = predictor.probabilities(np.random.default_rng(0).random((3, 20, 24)).astype(np.float32), axis=2)
    assert probs.shape == (3, 3, 20, 24)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
