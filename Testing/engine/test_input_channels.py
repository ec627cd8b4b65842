"""More than the slice as the network's input: the engine's multi-channel path (``ModelConfig.in_channels``), and
the two candidates of issue 11 built on it in the clinician benchmark (``semiseg_bench.inputs``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semiseg.completion import CompletionConfig, ShapePrior
from semiseg.inference import Predictor
from semiseg.io.slices import SliceSet, resize_images, take_slices
from semiseg.training import TrainData, Trainer
from semiseg.training.config import ModelConfig, TrainConfig
from semiseg.training.progress import ProgressLog
from semiseg_bench.inputs import leave_one_out_channels, neighbour_channels, training_slices

from enginetesting import dice, drifting_disc


def test_slices_of_a_multichannel_volume_keep_their_channels_together():
    volume = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # (C, K, J, I)
    for axis in (0, 1, 2):
        one = take_slices(volume[1], axis)
        both = take_slices(volume, axis)
        assert both.shape == (one.shape[0], 2, *one.shape[1:])
        np.testing.assert_array_equal(both[:, 1], one)
    resized = resize_images(torch.from_numpy(np.ascontiguousarray(take_slices(volume, 2))), 8)
    assert resized.shape == (3, 2, 8, 8)


def test_neighbour_channels_are_the_slices_before_and_after_with_the_edges_repeated():
    image = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)  # K = 5 slices along IJK axis 2
    three = neighbour_channels(image, 2)
    assert three.shape == (3, 5, 6, 7)
    np.testing.assert_array_equal(three[1], image)
    np.testing.assert_array_equal(three[0, 1:], image[:-1])
    np.testing.assert_array_equal(three[2, :-1], image[1:])
    np.testing.assert_array_equal(three[0, 0], image[0])
    np.testing.assert_array_equal(three[2, -1], image[-1])
    along_i = neighbour_channels(image, 0)  # IJK axis 0 is numpy's last
    np.testing.assert_array_equal(along_i[0, :, :, 3], image[:, :, 2])


def test_a_training_slice_sees_the_prior_of_the_other_labelled_slices_not_its_own_label():
    """Leave one out: at a labelled slice, the prior of every labelled slice is the label itself; the prior of the
    others is what a hidden slice sees at inference."""
    image, truth = drifting_disc([24, 26, 28, 30, 32, 34, 36, 38, 40], radius=9.0)
    kept = [1, 4, 7]
    sparse = np.zeros_like(truth)
    sparse[kept] = truth[kept]
    j, i = np.mgrid[0:64, 0:64]
    sparse[4] = np.hypot(j - 12, i - 12) < 5  # drawn where the image does not say: only its own label puts it there
    config = CompletionConfig(interpolation="registration")
    prior = ShapePrior.build(sparse, 2, kept, 2, config, image)
    fields = dict(prior.motion._fields)
    loo = leave_one_out_channels(image, sparse, 2, kept, 2, prior)
    assert loo.shape == (3, 2, 64, 64)
    assert all(prior.motion._fields[key] is field for key, field in fields.items())  # shared, not estimated again
    without_4 = sparse.copy()
    without_4[4] = 0
    unshared = ShapePrior.build(without_4, 2, [1, 7], 2, config, image).alone()[1, 4]
    np.testing.assert_allclose(loo[1, 1], unshared, atol=1e-6)
    np.testing.assert_array_equal(loo[:, 0], image[kept])  # the image first
    full = prior.alone()[1]
    np.testing.assert_array_equal(full[kept] > 0.5, sparse[kept] > 0)  # the full prior: the labels themselves
    middle = loo[1, 1] > 0.5  # slice 4 from slices 1 and 7, carried along the image
    assert dice(middle, truth[4] > 0) > 0.9 and not middle[12, 12]  # the disc, not the label drawn on slice 4
    alone = leave_one_out_channels(image, sparse, 2, [4], 2, prior)  # one slice: nothing else to interpolate
    np.testing.assert_allclose(alone[0, 1], 0.5)


def test_a_network_with_extra_input_channels_trains_and_predicts_from_its_checkpoint(tmp_path):
    image, truth = drifting_disc([24, 26, 28, 30, 32, 34, 36, 38, 40], radius=9.0)
    kept = [2, 6]
    labeled = training_slices("completion_25d", image, truth, 2, kept, 2, 32, "disc", prior=None)
    assert labeled.images.shape == (2, 3, 32, 32) and labeled.labels.shape == (2, 32, 32)
    empty = SliceSet.concat([], 32, False)
    config = TrainConfig(iterations=2, size=32, batch_labeled=2, batch_unlabeled=2, device="cpu", val_every=0,
                         checkpoint_every=1000, threads=1, precision="fp32")
    threads = torch.get_num_threads()
    try:
        Trainer(config, "supervised", {}, 2, tmp_path, ModelConfig(in_channels=3), meta={"axis": 2},
                log=ProgressLog(None, stream=None)).fit(TrainData(labeled, SliceSet.concat([], 32, True), empty, 2))
    finally:
        torch.set_num_threads(threads)
    predictor = Predictor(tmp_path / "checkpoint.pt", "cpu", precision="fp32")
    probs = predictor.probabilities(neighbour_channels(image, 2), 2)
    assert probs.shape == (2, *image.shape) and np.allclose(probs.sum(0), 1, atol=1e-5)
    with pytest.raises(RuntimeError):  # the network wants its three channels, not the slice alone
        predictor.probabilities(image, 2)
