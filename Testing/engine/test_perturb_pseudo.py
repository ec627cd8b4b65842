"""Tests of the shared semi-supervised pieces: semiseg.blocks.perturb and semiseg.blocks.pseudo."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from semiseg.blocks.losses import masked_dice
from semiseg.blocks.perturb import (
    colour_jitter,
    cutmix,
    cutmix_mask,
    decode_with_dropout,
    feature_dropout,
    gaussian_blur,
    mix_targets,
    strong_augment,
)
from semiseg.blocks.pseudo import (
    EMATeacher,
    PseudoLabels,
    SemiConfig,
    confidence_mask,
    eval_logits,
    evaluating,
    forward_split,
    pseudo_label,
)
from semiseg.blocks.schedule import TrainProgress, unsup_weight
from semiseg.models import UNet2D


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- confidence masking


def crafted_teacher() -> torch.Tensor:
    """(1, 3, 4, 4) logits: left half confident (p ~ 0.9999), right half not (p = 1/3)."""
    t = torch.zeros(1, 3, 4, 4)
    t[0, 1, :, :2] = 10.0
    return t


def test_pseudo_label_and_mask_values():
    conf, label = pseudo_label(crafted_teacher())
    assert conf.shape == label.shape == (1, 4, 4) and label.dtype == torch.int64
    assert torch.all(label[0, :, :2] == 1)
    assert torch.allclose(conf[0, :, 2:], torch.full((4, 2), 1 / 3))
    mask = confidence_mask(conf, 0.95)
    assert mask.dtype == torch.float32 and mask.sum() == 8 and torch.all(mask[0, :, :2] == 1)
    assert confidence_mask(torch.tensor([0.95, 0.9499]), 0.95).tolist() == [1.0, 0.0]  # >= tau counts


def test_pseudo_label_is_detached():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    conf, label = pseudo_label(logits)
    assert not conf.requires_grad and not label.requires_grad


def test_pixels_below_tau_contribute_nothing():
    conf, label = pseudo_label(crafted_teacher())
    mask = confidence_mask(conf, 0.95)
    base = torch.randn(1, 3, 4, 4, generator=gen(1))
    changed = base.clone()
    changed[..., 2:] = torch.randn(1, 3, 4, 2, generator=gen(2)) * 5  # only the unconfident pixels
    grads, losses = [], []
    for s in (base, changed):
        s = s.clone().requires_grad_(True)
        loss = masked_dice(s, label, mask)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(s.grad)
    assert losses[0] == pytest.approx(losses[1], abs=1e-7)
    for g in grads:
        assert torch.all(g[..., 2:] == 0) and g[..., :2].abs().sum() > 0
    assert torch.equal(grads[0][..., :2], grads[1][..., :2])


def test_empty_mask_gives_zero_loss_with_graph():
    s = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = masked_dice(s, torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(s.grad == 0)


# --------------------------------------------------------------------------- CutMix


def test_cutmix_mixes_images_and_labels_with_the_same_box():
    n, c, h, w = 6, 2, 16, 20
    box = cutmix_mask(n, h, w, gen(3), p=1.0)
    x, x_mix = torch.zeros(n, c, h, w), torch.ones(n, c, h, w)
    y, y_mix = torch.zeros(n, h, w, dtype=torch.long), torch.full((n, h, w), 3)
    xm, ym = cutmix(x, x_mix, box), mix_targets(y, y_mix, box)
    for i in range(n):
        for r in range(h):
            for q in range(w):
                inside = bool(box[i, r, q])
                assert all(float(xm[i, k, r, q]) == float(inside) for k in range(c))
                assert int(ym[i, r, q]) == (3 if inside else 0)
    conf = torch.rand(n, h, w, generator=gen(4))
    conf_mix = torch.rand(n, h, w, generator=gen(5))
    mixed = PseudoLabels(conf, y).mixed(PseudoLabels(conf_mix, y_mix), box)
    assert torch.equal(mixed.label, ym)
    assert torch.equal(mixed.confidence, torch.where(box, conf_mix, conf))


def test_cutmix_mask_is_one_box_within_bounds():
    n, h, w = 300, 64, 48
    box = cutmix_mask(n, h, w, gen(6), p=1.0)
    assert box.shape == (n, h, w) and box.dtype == torch.bool
    areas = []
    for i in range(n):
        rows = torch.nonzero(box[i].any(1)).flatten()
        cols = torch.nonzero(box[i].any(0)).flatten()
        bh, bw = len(rows), len(cols)
        assert rows[-1] - rows[0] + 1 == bh and cols[-1] - cols[0] + 1 == bw  # contiguous
        assert int(box[i].sum()) == bh * bw  # a filled rectangle
        # Sides are rounded to whole pixels: allow half a pixel on each side.
        tol = 0.5 * (bh + bw + 1) + 0.25
        assert 0.02 * h * w - tol <= bh * bw <= 0.4 * h * w + tol
        assert (bh + 0.5) / (bw - 0.5) >= 0.3 and (bh - 0.5) / (bw + 0.5) <= 1 / 0.3
        areas.append(bh * bw / (h * w))
    assert min(areas) < 0.05 and max(areas) > 0.33  # the whole range is used


def test_cutmix_mask_probability_and_device():
    assert not cutmix_mask(10, 8, 8, gen(0), p=0.0).any()
    hits = cutmix_mask(2000, 8, 8, gen(1), p=0.5).flatten(1).any(1).float().mean()
    assert 0.45 < float(hits) < 0.55
    assert torch.equal(cutmix_mask(4, 8, 8, gen(2)), cutmix_mask(4, 8, 8, gen(2)))
    assert cutmix_mask(2, 8, 8, device="cpu").device.type == "cpu"


def test_cutmix_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        cutmix(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 4), torch.zeros(2, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError):
        mix_targets(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), torch.zeros(3, 8, 8, dtype=torch.bool))


# --------------------------------------------------------------------------- jitter and blur


def test_colour_jitter_shape_range_and_per_sample():
    x = torch.rand(1, 1, 32, 32, generator=gen(7)).expand(8, 1, 32, 32).contiguous()
    y = colour_jitter(x, gen(8), p=1.0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    flat = y.flatten(1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(8) for j in range(i + 1, 8))
    assert torch.equal(colour_jitter(x, gen(8), p=0.0), x)
    assert torch.equal(colour_jitter(x, gen(9)), colour_jitter(x, gen(9)))


def test_colour_jitter_skips_samples_with_probability():
    x = torch.rand(400, 1, 8, 8, generator=gen(10))
    y = colour_jitter(x, gen(11), p=0.8)
    same = (y == x).flatten(1).all(1).float().mean()
    assert 0.13 < float(same) < 0.27


def test_colour_jitter_brightness_only_is_a_scale():
    x = torch.full((4, 1, 4, 4), 0.5)
    y = colour_jitter(x, gen(12), brightness=0.5, contrast=0.0, saturation=0.0, hue=0.0, p=1.0)
    factors = y[:, 0, 0, 0] / 0.5
    assert torch.all((factors >= 0.5) & (factors <= 1.5))
    assert torch.allclose(y, factors.view(4, 1, 1, 1) * x)


def reference_blur(img: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    k2 = (k[:, None] * k[None, :])[None, None]
    return F.conv2d(F.pad(img[None], (radius,) * 4, mode="replicate"), k2)[0]


def test_gaussian_blur_matches_reference_per_sample():
    x = torch.rand(3, 2, 20, 24, generator=gen(13))
    y = gaussian_blur(x, gen(14), sigma=(1.0, 1.0), p=1.0)
    for i in range(3):
        for c in range(2):
            assert torch.allclose(y[i, c], reference_blur(x[i, c : c + 1], 1.0, 3)[0], atol=1e-5)


def test_gaussian_blur_shape_range_and_per_sample():
    x = torch.rand(1, 1, 32, 32, generator=gen(15)).expand(6, 1, 32, 32).contiguous()
    y = gaussian_blur(x, gen(16), p=1.0)
    assert y.shape == x.shape
    assert float(y.min()) >= float(x.min()) - 1e-6 and float(y.max()) <= float(x.max()) + 1e-6
    assert len({round(float(v), 5) for v in y.std(dim=(1, 2, 3))}) == 6  # six different sigmas
    const = torch.full((2, 1, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(const, gen(0), p=1.0), const, atol=1e-6)
    assert torch.equal(gaussian_blur(x, gen(0), p=0.0), x)


def test_strong_augment_keeps_shape_and_range():
    x = torch.rand(4, 1, 32, 32, generator=gen(17))
    y = strong_augment(x, gen(18))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


# --------------------------------------------------------------------------- feature perturbation


def test_feature_dropout_drops_whole_channels():
    torch.manual_seed(0)
    feats = [torch.ones(4, 32, 8, 8), torch.ones(4, 64, 4, 4)]
    out = feature_dropout(feats, 0.5)
    assert [o.shape for o in out] == [f.shape for f in feats]
    for o in out:
        per_channel = o.flatten(2)
        assert torch.all(per_channel.amin(2) == per_channel.amax(2))  # a channel is all kept or all dropped
        assert set(per_channel[..., 0].unique().tolist()) <= {0.0, 2.0}
        assert 0.3 < float((per_channel[..., 0] == 0).float().mean()) < 0.7
    assert torch.equal(feature_dropout(feats, 0.0)[0], feats[0])
    with pytest.raises(ValueError):
        feature_dropout(feats, 1.0)


def test_decode_with_dropout_splits_streams():
    torch.manual_seed(0)
    model = UNet2D(1, 3).eval()
    x = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        clean, same, dropped = decode_with_dropout(model, model.encode(x), (0.0, 0.5), start=2)
        ref = model(x)
    assert clean.shape == (5, 3, 32, 32) and same.shape == dropped.shape == (3, 3, 32, 32)
    assert torch.allclose(clean, ref, atol=1e-5) and torch.allclose(same, ref[2:], atol=1e-5)
    assert not torch.allclose(dropped, ref[2:], atol=1e-3)


# --------------------------------------------------------------------------- schedule, EMA, forward


@pytest.mark.parametrize(
    "it, warmup, rampup, expected",
    [
        (0, 0.0, 0.0, 1.0),
        (99, 0.0, 0.0, 1.0),
        (0, 0.2, 0.0, 0.0),
        (19, 0.2, 0.0, 0.0),
        (20, 0.2, 0.0, 1.0),
        (20, 0.2, 0.3, math.exp(-5.0)),
        (35, 0.2, 0.3, math.exp(-5.0 * 0.5**2)),
        (49, 0.2, 0.3, math.exp(-5.0 * (1 / 30) ** 2)),
        (50, 0.2, 0.3, 1.0),
        (0, 0.0, 0.5, math.exp(-5.0)),
        (25, 0.0, 0.5, math.exp(-5.0 * 0.25)),
    ],
)
def test_unsup_weight_schedule(it, warmup, rampup, expected):
    assert unsup_weight(TrainProgress(it, 100), warmup, rampup) == pytest.approx(expected)


def test_semi_config_defaults_and_checks():
    c = SemiConfig()
    assert (c.tau, c.warmup, c.rampup) == (0.95, 0.0, 0.0)
    for bad in ({"tau": 1.5}, {"warmup": -0.1}, {"warmup": 0.7, "rampup": 0.5}):
        with pytest.raises(ValueError):
            SemiConfig(**bad)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)


def test_ema_teacher_update_math():
    student = Tiny()
    teacher = EMATeacher(student, decay=0.9)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        student.lin.weight.fill_(2.0)
        student.bn.running_mean.fill_(5.0)
    teacher.update(student)  # first update: d = min(0.9, 1 - 1/1) = 0 -> a copy
    assert torch.all(teacher.model.lin.weight == 2.0) and torch.all(teacher.model.bn.running_mean == 5.0)
    with torch.no_grad():
        student.lin.weight.fill_(4.0)
    teacher.update(student)  # d = min(0.9, 1 - 1/2) = 0.5
    assert torch.allclose(teacher.model.lin.weight, torch.full((2, 2), 3.0))
    for _ in range(20):
        teacher.update(student)  # d reaches 0.9
    with torch.no_grad():
        student.lin.weight.fill_(0.0)
    before = teacher.model.lin.weight.clone()
    teacher.update(student)
    assert torch.allclose(teacher.model.lin.weight, 0.9 * before)
    assert int(teacher.num_updates) == 23
    state = teacher.state_dict()
    assert "num_updates" in state and "model.lin.weight" in state
    other = EMATeacher(Tiny(), decay=0.9)
    other.load_state_dict(state)
    assert torch.equal(other.model.lin.weight, teacher.model.lin.weight) and int(other.num_updates) == 23
    with pytest.raises(ValueError):
        EMATeacher(student, decay=1.0)


def test_ema_teacher_predicts_in_eval_mode_without_grad():
    torch.manual_seed(0)
    model = UNet2D(1, 2)
    teacher = EMATeacher(model, 0.99)
    teacher.train()
    x = torch.rand(2, 1, 32, 32)
    out = teacher(x)
    assert not out.requires_grad
    assert torch.allclose(out, teacher(x))  # no dropout, running statistics


def test_forward_split_equals_separate_forwards_in_eval_mode():
    torch.manual_seed(0)
    model = UNet2D(1, 3).eval()
    a, b, c = torch.rand(2, 1, 32, 32), torch.rand(3, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        outs = forward_split(model, [a, b, c])
        for out, x in zip(outs, (a, b, c)):
            assert out.shape == (x.shape[0], 3, 32, 32)
            assert torch.allclose(out, model(x), atol=1e-5)


def test_eval_logits_restores_mode():
    model = UNet2D(1, 2).train()
    x = torch.rand(2, 1, 32, 32)
    out = eval_logits(model, x)
    assert model.training and not out.requires_grad
    assert torch.allclose(out, eval_logits(model, x))
    model.eval()
    with evaluating(model):
        pass
    assert not model.training


@pytest.mark.parametrize("weight, expected", [(0.0, 1.0), (1.0, 0.5 * 1.0 + 0.5 * 3.0), (0.5, 0.75 * 1.0 + 0.25 * 3.0)])
def test_blend_is_supervised_during_warmup_and_papers_mean_at_full_weight(weight, expected):
    from semiseg.blocks.pseudo import blend

    assert float(blend(torch.tensor(1.0), torch.tensor(3.0), weight)) == pytest.approx(expected)


def test_check_ranges_reads_closed_and_open_interval_ends():
    from dataclasses import dataclass

    from semiseg.errors import InputError
    from semiseg.settings import check_ranges

    @dataclass
    class C:
        a: float = 0.0
        b: float = 1.0

    check_ranges(C(), a="[0, 1]", b="[0, 1]")
    with pytest.raises(InputError, match=r"a must be in \(0, 1\], got 0.0"):
        check_ranges(C(), a="(0, 1]")
    with pytest.raises(InputError, match=r"b must be in \[0, 1\), got 1.0"):
        check_ranges(C(), b="[0, 1)")
    check_ranges(C(b=1e9), b="(0, inf)")
