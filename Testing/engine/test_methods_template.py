"""Tests of the template :meth:`Method.loss`: the warm-up guard, the blend of L_sup with each method's
own L_u, the detached terms, and the teacher and reference strategies built from the config.

The blend is checked against the formula each method's docstring states, rebuilt from the logged
terms, so the test pins the behaviour without hard-coded numbers. (When the template was introduced,
two SGD steps of every method and option below gave the same totals, terms and statistics to the
last bit as the per-method code it replaced.)
"""

from __future__ import annotations

import math

import pytest
import torch
from test_methods_weak_strong import discs

from semiseg.blocks.pseudo import EMATeacher, StudentTeacher, build_teacher
from semiseg.blocks.refbank import ReferenceGuidedLabeler
from semiseg.blocks.schedule import TrainProgress
from semiseg.methods import Batch, build_method
from semiseg.models import UNet2D

# L_u of each method from its logged terms and config, as its module docstring states it
UNSUP = {
    "fixmatch": lambda t, c: t["u"],
    "unimatch": lambda t, c: 0.25 * t["s1"] + 0.25 * t["s2"] + 0.5 * t["fp"],
    "crossmatch": lambda t, c: 0.25 * t["s1"] + 0.25 * t["s2"] + 0.5 * ((1 - c.eta) * t["tkd"] + c.eta * t["dkd"]),
    "semsim": lambda t, c: (c.weight_u * (0.25 * t["s1"] + 0.25 * t["s2"] + 0.5 * t["fp"])
                            + c.weight_intra * t["intra"] + c.weight_cross * t["cross"]),
    "refguided": lambda t, c: c.weight_u * (t["ref_ce"] + t["ref_dice"]) / 2,
}
CASES = [("fixmatch", {}), ("fixmatch", {"ema": 0.9, "references": True}), ("fixmatch", {"cutmix_p": 0.0}),
         ("unimatch", {}), ("unimatch", {"ema": 0.9}), ("unimatch", {"references": True}),
         ("crossmatch", {}), ("crossmatch", {"ema": 0.9, "eta": 0.6}),
         ("semsim", {"weight_u": 0.7}), ("semsim", {"references": True}),
         ("refguided", {}), ("refguided", {"combine": "union", "ema": 0.9, "weight_u": 0.5})]


def batch_of(seed: int, second: bool = True) -> Batch:
    x_l, y_l = discs(2, 32, seed)
    return Batch(x_l, y_l, discs(2, 32, seed + 10)[0], discs(2, 32, seed + 20)[0] if second else None)


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in CASES])
def test_total_is_the_blend_of_sup_and_the_method_formula(name, options):
    """Two SGD steps on the ramp (weight strictly between 0 and 1): total = (1 - w/2) L_sup + (w/2) L_u."""
    torch.manual_seed(0)
    model = UNet2D(1, 3)
    method = build_method(name, {"tau": 0.5, "warmup": 0.0, "rampup": 0.5, **options}, 3, model)
    opt = torch.optim.SGD(list(model.parameters()) + method.trainable_parameters(), lr=0.05)
    for it in range(2):
        progress = TrainProgress(2 + it, 10)
        w = math.exp(-5 * (1 - (2 + it) / 5) ** 2)
        batch = method.prepare(batch_of(1 + it), torch.Generator().manual_seed(it))
        out = method.loss(model, batch, progress)
        assert list(out.terms)[0] == "sup" and list(out.stats)[-1] == "unsup_weight"
        assert out.stats["unsup_weight"] == pytest.approx(w) and 0.0 < w < 1.0
        assert all(isinstance(v, float) for v in out.terms.values())
        expected = (1 - w / 2) * out.terms["sup"] + (w / 2) * UNSUP[name](out.terms, method.config)
        assert float(out.total.detach()) == pytest.approx(expected, abs=1e-6)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        method.after_step(model, progress)


@pytest.mark.parametrize("name", sorted(UNSUP))
def test_missing_unlabelled_batches_fall_back_to_the_supervised_loss(name):
    """Without x_u every method trains L_sup alone; without x_u2 those that need it (semsim too) do."""
    model = UNet2D(1, 3)
    method = build_method(name, {"tau": 0.5}, 3, model)
    x_l, y_l = discs(2, 32, 1)
    torch.manual_seed(0)  # the same dropout draws
    sup = float(method.sup_loss(model(x_l), y_l).detach())
    for batch in (Batch(x_l, y_l), batch_of(1, second=False)):
        torch.manual_seed(0)
        out = method.loss(model, batch, TrainProgress(9, 10))
        if batch.x_u is not None and method.required_unlabeled == 1:  # the second batch feeds an optional CutMix
            assert set(out.terms) > {"sup"} and out.stats["unsup_weight"] == 1.0
            continue
        assert out.terms == {"sup": pytest.approx(sup)} and out.stats == {"unsup_weight": 0.0}
        assert float(out.total.detach()) == pytest.approx(sup)


def test_teacher_and_references_are_strategies_built_from_the_config():
    model = UNet2D(1, 3)
    for name, options, kind in [("unimatch", {}, StudentTeacher), ("unimatch", {"ema": 0.5}, EMATeacher),
                                ("semsim", {}, StudentTeacher), ("supervised", {}, StudentTeacher)]:
        method = build_method(name, options, 3, model)
        assert type(method.teacher) is kind and method.teacher.is_student == (kind is StudentTeacher)
        assert method.references is None
    assert not list(StudentTeacher().state_dict())  # nothing saved: checkpoints keep their keys
    method = build_method("fixmatch", {"references": True}, 3, model)
    assert isinstance(method.references, ReferenceGuidedLabeler)
    x, own = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    student = build_teacher(method.config, model)
    assert student.net(model) is model and student.logits(model, x, own=own) is own
    torch.testing.assert_close(student.logits(model, x), model.eval()(x))
    ema = build_teacher(build_method("fixmatch", {"ema": 0.5}, 3, model).config, model)
    assert ema.net(model) is ema.model and torch.equal(ema.logits(model, x, own=own), ema(x))
