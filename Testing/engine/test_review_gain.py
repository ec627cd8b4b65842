"""The review list's order: each slice's expected gain in Dice (:mod:`semiseg.inference.review`), and the committee
of the fused result and the network that finds a structure the user's interpolated labels leave out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semiseg.completion import ShapePrior
from semiseg.inference import outputs, review_slices, write_result
from semiseg.inference.metrics import dice
from semiseg.inference.review import expected_gain
from semiseg.io.images import read_image

from enginetesting import write_volume


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_with_a_sure_truth_the_gains_add_up_to_the_dice_lost(axis):
    """1 - Dice = |Y xor T| / (|Y| + |T|): with the truth's probabilities 0 or 1, correcting every slice gains
    exactly the mean foreground Dice that is lost, and each slice its own share."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (6, 7, 8)).astype(np.uint8)
    labels = np.where(rng.random(truth.shape) < 0.3, rng.integers(0, 3, truth.shape), truth).astype(np.uint8)
    onehot = np.moveaxis(np.eye(3, dtype=np.float32)[truth], -1, 0)
    gain = expected_gain(labels, onehot, axis)
    lost = 1 - np.mean([dice(labels == c, truth == c) for c in (1, 2)])
    assert gain.shape == (truth.shape[2 - axis],) and gain.sum() == pytest.approx(lost, rel=1e-6) and lost > 0.1
    right = [slice(None)] * 3
    right[2 - axis] = 2
    labels[tuple(right)] = truth[tuple(right)]  # a slice without an error gains nothing, the others keep theirs
    again = expected_gain(labels, onehot, axis)
    assert again[2] == 0 and all(again[i] == pytest.approx(gain[i], rel=0.2) for i in range(len(gain)) if i != 2)


def test_the_review_list_puts_the_largest_expected_gain_first():
    """A large slice with a ring of unsure pixels gains more than a tiny unsure end slice; the confidence alone
    ranks them the other way."""
    probs = np.zeros((2, 4, 32, 32), np.float32)
    probs[0] = 1.0
    probs[:, 0, 4:28, 4:28] = [[[0.3]], [[0.7]]]  # a large structure, unsure on all of it
    probs[:, 0, 10:22, 10:22] = [[[0.0]], [[1.0]]]  # sure inside
    probs[:, 3, 15:17, 15:17] = [[[0.45]], [[0.55]]]  # a tiny end slice, the least confident
    result = outputs(probs)
    ranked = review_slices(result["labels"], result["confidence"], 2, {1}, result["gain"])
    assert [e["index"] for e in ranked][:2] == [0, 3] and ranked[0]["gain"] > ranked[1]["gain"] > 0
    assert [e["index"] for e in review_slices(result["labels"], result["confidence"], 2)][0] == 3
    assert all(e["gain"] == 0 for e in ranked[2:]) and next(e for e in ranked if e["index"] == 1)["labeled"]


LABELED = [0, 1, 7, 8]


def _hidden_structure():
    """Nine slices of 24 x 24: class 2 (a disc) on all of them, class 1 (a small disc) only on slices 2 and 3; the
    user labelled slices 0, 1, 7 and 8, which do not show class 1. A network that sees both (probability 0.9)."""
    yy, xx = np.mgrid[:24, :24]
    big, small = (yy - 12) ** 2 + (xx - 12) ** 2 < 36, (yy - 4) ** 2 + (xx - 4) ** 2 < 6
    truth = np.zeros((9, 24, 24), np.uint8)
    truth[:] = np.where(big, 2, 0)
    truth[2:4][:, small] = 1
    sparse = np.zeros_like(truth)
    sparse[LABELED] = truth[LABELED]
    net = np.full((3, 9, 24, 24), 0.05, np.float32)
    net[0] = 0.9
    for c, mask in ((2, np.broadcast_to(big, truth.shape)), (1, truth == 1)):
        net[:, mask] = 0.05
        net[c][mask] = 0.9
    return truth, sparse, net


def test_a_structure_the_labelled_slices_miss_comes_first_in_the_review_list(tmp_path):
    """The interpolation of slices 1 and 7 says class 1 is absent in between, and the fusion follows it; the
    committee keeps a tenth of the network's belief, so the slices that hold the structure lead the list. The fused
    result's own probabilities are sure of its absence: with them, the two slices barely stand out."""
    truth, sparse, net = _hidden_structure()
    prior = ShapePrior.build(sparse, 2, LABELED, 3)
    result = prior.outputs(net)
    assert not (result["labels"] == 1).any() and np.array_equal(result["labels"][LABELED], truth[LABELED])
    ranked = review_slices(result["labels"], result["confidence"], 2, set(LABELED), result["gain"])
    assert {e["index"] for e in ranked[:2]} == {2, 3}
    assert all(e["gain"] == 0 for e in ranked if e["labeled"])
    alone = outputs(prior.fuse(net), axis=2)["gain"]  # the fused result alone as the truth: they barely stand out
    lift = [g[[2, 3]].min() / g[[4, 5, 6]].max() for g in (result["gain"], alone)]
    assert lift[0] > 1.3 and lift[1] < 1.2

    image = write_volume(tmp_path / "image.nii.gz", truth.astype(np.float32))
    out = write_result(result, read_image(image)[1], tmp_path / "out", 2, labeled=set(LABELED))
    review = json.loads((out / "review.json").read_text())
    assert [e["index"] for e in review["slices"]] == [e["index"] for e in ranked]
    assert review["slices"][0]["gain"] == pytest.approx(ranked[0]["gain"]) and "expected gain" in review["statistic"]
    assert sorted(p.name for p in out.iterdir()) == ["confidence.nii.gz", "entropy.nii.gz", "labels.nii.gz",
                                                      "review.json"]
