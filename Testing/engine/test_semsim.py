"""SemSim: affinity rectification, local prototype querying, uncertainty weight, SFM, loss, trainer smoke."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semiseg.blocks.affinity import affinity, rectify, to_grid
from semiseg.blocks.prototypes import class_weights, local_prototypes, query, region_index, uncertainty_weight
from semiseg.blocks.schedule import TrainProgress
from semiseg.inference import Predictor
from semiseg.io.slices import SliceSet
from semiseg.methods import METHODS, Batch, build_method
from semiseg.models import UNet2D
from semiseg.models.sfm import SpatialFusion
from semiseg.training import TrainData, Trainer
from semiseg.training.config import TrainConfig
from semiseg.training.progress import ProgressLog


# -- intra-image affinity ------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
def test_affinity_rows_are_distributions(temperature):
    aff = affinity(torch.randn(2, 8, 5, 6), temperature)
    assert aff.shape == (2, 30, 30)
    assert (aff >= 0).all()
    torch.testing.assert_close(aff.sum(-1), torch.ones(2, 30))


def test_rectified_predictions_stay_distributions():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(3, 4, 6, 6, generator=g), 1)
    rect = rectify(probs, affinity(torch.randn(3, 16, 6, 6, generator=g), 0.1))
    assert (rect >= 0).all()
    torch.testing.assert_close(rect.sum(1), torch.ones(3, 6, 6))
    pooled = to_grid(torch.softmax(torch.randn(3, 4, 24, 24, generator=g), 1), (6, 6))
    torch.testing.assert_close(pooled.sum(1), torch.ones(3, 6, 6))


def test_rectification_averages_within_a_feature_group():
    """Two groups of identical features at a sharp temperature: p' = (p + group mean) / 2."""
    feats = torch.zeros(1, 2, 2, 2)
    feats[0, 0, 0, :] = 1.0  # top row: group A
    feats[0, 1, 1, :] = 1.0  # bottom row: group B (orthogonal)
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6]]).T.reshape(1, 2, 2, 2)
    rect = rectify(probs, affinity(feats, 0.01))
    flat = probs.flatten(2)[0]
    expected = torch.stack([(flat[:, i] + flat[:, (i // 2) * 2 : (i // 2) * 2 + 2].mean(1)) / 2 for i in range(4)], 1)
    torch.testing.assert_close(rect.flatten(2)[0], expected, atol=1e-6, rtol=0)


def test_affinity_rejects_bad_temperature():
    with pytest.raises(ValueError):
        affinity(torch.randn(1, 2, 3, 3), 0.0)


# -- cross-image local prototypes ------------------------------------------------------------------
def _features(labels: torch.Tensor, regions: int = 2, offset: float = 0.3, classes: int = 3) -> torch.Tensor:
    """Toy features ``e_class + offset * e_(classes + block)``: class and block both visible."""
    b, h, w = labels.shape
    block = region_index(h, w, regions).expand(b, h, w)
    onehot = F.one_hot(labels, classes).float().permute(0, 3, 1, 2)
    return torch.cat([onehot, offset * F.one_hot(block, regions * regions).float().permute(0, 3, 1, 2)], 1)


def test_local_prototypes_are_masked_means_with_whole_image_fallback():
    lab = torch.zeros(1, 8, 8, dtype=torch.long)
    lab[0, 4:, :4] = 1  # class 1 only in block 2 (bottom-left)
    lab[0, :4, 4:6] = 2  # class 2 in block 1 (top-right) ...
    lab[0, 6:, 6:] = 2  # ... and block 3 (bottom-right); never in block 0
    feats = torch.randn(1, 5, 8, 8)
    protos, valid = local_prototypes(feats, class_weights(lab, 3, (8, 8)), regions=2)
    assert protos.shape == (1, 4, 3, 5) and valid.all()
    block = region_index(8, 8, 2)
    for k in range(4):
        for c in range(3):
            inside = (lab[0] == c) & (block == k)
            sel = inside if inside.any() else lab[0] == c
            torch.testing.assert_close(protos[0, k, c], feats[0][:, sel].mean(1))
    whole = feats[0][:, lab[0] == 2].mean(1)
    torch.testing.assert_close(protos[0, 0, 2], whole)  # the fallback


def test_querying_recovers_known_classes_including_the_fallback_region():
    g = torch.Generator().manual_seed(1)
    lab_l = torch.randint(0, 3, (2, 8, 8), generator=g)
    lab_l[0, :4, :4][lab_l[0, :4, :4] == 2] = 0  # class 2 absent from block 0 of labelled image 0
    lab_u = torch.randint(0, 3, (3, 8, 8), generator=g)
    protos, valid = local_prototypes(_features(lab_l), class_weights(lab_l, 3, (8, 8)), regions=2)
    m = query(_features(lab_u), protos, valid, regions=2, temperature=0.1)
    assert m.shape == (3, 2, 3, 8, 8)
    torch.testing.assert_close(m.sum(2), torch.ones(3, 2, 8, 8))
    assert torch.equal(m[:, 0].argmax(1), lab_u)  # image 0 alone, block 0 via the fallback
    assert torch.equal(m.mean(1).argmax(1), lab_u)


def test_class_absent_from_a_labelled_image_gets_no_mass_from_it():
    lab_l = torch.zeros(2, 4, 4, dtype=torch.long)
    lab_l[1, :2] = 1
    protos, valid = local_prototypes(_features(lab_l), class_weights(lab_l, 3, (4, 4)), regions=2)
    assert valid.tolist() == [[True, False, False], [True, True, False]]
    m = query(torch.randn(1, 7, 4, 4), protos, valid, regions=2)
    assert (m[0, 0, 1:] == 0).all() and (m[0, :, 2] == 0).all() and torch.isfinite(m).all()


def test_uncertainty_weight_is_one_when_labelled_images_agree():
    m = torch.softmax(torch.randn(2, 1, 4, 5, 5), 2).expand(2, 3, 4, 5, 5)
    torch.testing.assert_close(uncertainty_weight(m), torch.ones(2, 5, 5))
    near_uniform = torch.softmax(0.05 * torch.randn(2, 3, 4, 5, 5), 2)  # the scale r = 1000 is made for
    u = uncertainty_weight(near_uniform, r=1000.0)
    assert (u < 1).all() and (u > 0).all()
    assert (uncertainty_weight(near_uniform, r=100.0) > u).all()  # milder r, higher weight
    far = uncertainty_weight(torch.softmax(3 * torch.randn(2, 3, 4, 5, 5), 2), r=1000.0)
    assert (far >= 0).all() and (far < 1).all()


# -- spatial-aware fusion module -------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 48])
def test_sfm_shapes_and_parameter_count(size):
    unet = UNet2D(1, 4)
    feats = unet.encode(torch.randn(2, 1, size, size))
    sfm = SpatialFusion((64, 128, 256), dim=128, window=2)  # SemSim's default stages
    out = sfm(feats[2:5])
    assert out.shape == (2, 128, size // 8, size // 8)
    n = sum(p.numel() for p in sfm.parameters())
    print(f"SFM parameters at D=128: {n / 1e6:.3f} M (paper ~0.79 M)")
    assert 0.6e6 < n < 0.9e6
    finer = SpatialFusion((32, 64, 128), dim=128, window=3)  # padded windows on a 1-based reading
    assert finer(feats[1:4]).shape == (2, 128, size // 4, size // 4)


# -- the method --------------------------------------------------------------------------------
def _batch(size=32, classes=3, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = torch.zeros(n, size, size, dtype=torch.long)
    lab[:, size // 4 : size // 2, size // 4 : 3 * size // 4] = 1
    lab[:, size // 2 : 3 * size // 4, size // 4 : 3 * size // 4] = 2
    img = lab.float()[:, None] / classes + 0.05 * torch.rand(n, 1, size, size, generator=g)
    x_u = img.flip(-1) + 0.05 * torch.rand(n, 1, size, size, generator=g)
    return Batch(img, lab, x_u, img.flip(-2).clone())


def test_semsim_registered_with_two_unlabelled_batches():
    assert METHODS["semsim"].unlabeled_batches == 2


def test_semsim_loss_is_finite_and_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = UNet2D(1, 3)
    method = build_method("semsim", {"tau": 0.0}, 3, model)  # tau 0: every unsupervised term is active
    opt = torch.optim.Adam(list(model.parameters()) + method.trainable_parameters(), lr=2e-3)
    batch, losses = _batch(), []
    for step in range(10):
        torch.manual_seed(123)  # the same perturbations every step: a fixed problem
        out = method.loss(model, batch, TrainProgress(step, 10))
        assert torch.isfinite(out.total) and all(np.isfinite(v) for v in out.terms.values())
        assert out.terms["intra"] > 0 and out.terms["cross"] > 0
        opt.zero_grad()
        out.total.backward()
        if step == 0:
            assert all(p.grad is not None for p in method.sfm.parameters())
        opt.step()
        losses.append(float(out.total.detach()))
    print("semsim losses", [round(v, 4) for v in losses])
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_semsim_warmup_is_supervised_only():
    model = UNet2D(1, 3)
    method = build_method("semsim", {"warmup": 0.5}, 3, model)
    out = method.loss(model, _batch(), TrainProgress(0, 10))
    assert set(out.terms) == {"sup"} and out.stats["unsup_weight"] == 0.0


def _data(n=6, size=32, classes=3):
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, classes, (n, size, size), generator=g)
    img = lab.float()[:, None] / classes + 0.1 * torch.rand(n, 1, size, size, generator=g)
    val = SliceSet(img[:2].clone(), lab[:2].clone(), [("v", i) for i in range(2)])
    return TrainData(SliceSet(img, lab, [("t", i) for i in range(n)]), val, SliceSet(img.flip(-1).clone(), None,
    []), classes)


def test_semsim_trains_two_steps_and_predicts(tmp_path):
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
    trainer = Trainer(cfg, "semsim", {}, 3, tmp_path, log=ProgressLog(tmp_path / "progress.jsonl", stream=None))
    result = trainer.fit(_data())
    assert result["iteration"] == 2 and np.isfinite(result["loss"])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("sfm.") for k in state["method"])
    resumed = Trainer(cfg, "semsim", {}, 3, tmp_path / "again", log=ProgressLog(None, stream=None))
    resumed.resume(tmp_path / "checkpoint.pt")
    for k, v in trainer.method.state_dict().items():
        torch.testing.assert_close(resumed.method.state_dict()[k], v)
    predictor = Predictor(tmp_path / "checkpoint.pt", device="cpu", batch_size=4)
    probs = predictor.probabilities(np.random.default_rng(0).random((3, 20, 24)).astype(np.float32), axis=2)
    assert probs.shape == (3, 3, 20, 24)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
