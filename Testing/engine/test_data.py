from __future__ import annotations

import numpy as np
import pytest
import torch

from semiseg.contract import train_setting_problem
from semiseg.errors import InputError
from semiseg.io.slices import (
    Volume,
    build_slice_sets,
    choose_axis,
    labeled_slice_indices,
    normalize_intensity,
    put_slices,
    resize_labels,
    take_slices,
)


def _labels_on_slices(axis: int, indices, shape=(12, 30, 24)):
    lab = np.zeros(shape, np.uint8)
    np_axis = 2 - axis
    for i in indices:
        sl = [slice(None)] * 3
        sl[np_axis] = i
        sub = lab[tuple(sl)]
        sub[2:-2, 2:-2] = 1
    return lab


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_labeled_slices_and_auto_axis(axis):
    lab = _labels_on_slices(axis, [2, 5])
    assert labeled_slice_indices(lab, axis) == [2, 5]
    assert labeled_slice_indices(lab, axis, extra=[0]) == [0, 2, 5]
    assert choose_axis(lab) == axis


def test_auto_axis_dense_labels_prefers_coarse_spacing_then_k():
    lab = np.ones((10, 10, 10), np.uint8)
    assert choose_axis(lab) == 2
    assert choose_axis(lab, spacing_kji=(1.0, 3.0, 1.0)) == 1


def test_auto_axis_one_tie_break_for_engine_and_front_ends():
    """Ties go to the coarsest spacing, then K, J, I; without any label, K (semiseg.contract.choose_axis)."""
    lab = np.zeros((10, 10, 10), np.uint8)
    assert choose_axis(lab, spacing_kji=(1.0, 1.0, 3.0)) == 2
    lab[:, 3, 4] = 1  # a line along K: one index along J and along I, ten along K
    assert choose_axis(lab) == 1
    assert choose_axis(lab, spacing_kji=(1.0, 1.0, 2.0)) == 0


@pytest.mark.parametrize(
    ("iterations", "size", "problem"),
    [
        (1, 16, None),
        (None, None, None),
        (0, 64, "iterations must be >= 1"),
        (10, 8, ">= 16"),
        (10, 40, "multiple of 16"),
    ],
)
def test_training_setting_limits(iterations, size, problem):
    found = train_setting_problem(iterations, size)
    assert found is None if problem is None else problem in found


def test_listed_slice_out_of_range_raises():
    with pytest.raises(InputError, match="outside 0..7"):
        labeled_slice_indices(np.zeros((8, 5, 5), np.uint8), 2, extra=[8])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_take_and_put_slices_invert(axis):
    arr = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    stack = take_slices(arr, axis)
    assert stack.shape[0] == arr.shape[2 - axis]
    assert np.array_equal(put_slices(stack, axis), arr)
    assert np.array_equal(take_slices(arr, axis, [1])[0], stack[1])


def test_normalize_intensity_range_and_constant():
    arr = np.random.default_rng(0).normal(100, 20, (4, 10, 10)).astype(np.float32)
    out = normalize_intensity(arr)
    assert out.min() == 0.0 and out.max() == 1.0 and out.dtype == np.float32
    assert np.all(normalize_intensity(np.full((2, 3, 3), 5.0)) == 0)


def test_resize_labels_keeps_label_values():
    lab = torch.tensor(np.random.default_rng(1).integers(0, 4, (2, 7, 9)))
    out = resize_labels(lab, 32)
    assert out.shape == (2, 32, 32) and set(out.unique().tolist()) <= {0, 1, 2, 3}


def test_slice_sets_split_labeled_unlabeled_and_validation():
    import SimpleITK as sitk

    lab = _labels_on_slices(2, [0, 1, 2, 3, 4, 5], shape=(8, 30, 20))  # 6 labelled of 8 slices along K
    img = np.random.default_rng(0).random(lab.shape).astype(np.float32)
    vol = Volume("v", img, sitk.GetImageFromArray(img), lab, extra_labeled={2: [7]})
    extra = Volume("u", img[:, :, :16], sitk.GetImageFromArray(img[:, :, :16]))
    train, val, unl = build_slice_sets([vol], [extra], axis=2, size=16, min_val_slices=6, val_stride=5)
    assert len(train) + len(val) == 7 and len(val) == 1  # 6 painted + 1 checked-empty; every 5th held out
    assert len(unl) == 1 + 8  # slice 6 of the labelled volume + all 8 slices of the extra volume
    assert train.images.shape[1:] == (1, 16, 16) and train.labels.shape[1:] == (16, 16)
    assert ("v", 6) in unl.origin and ("v", 7) not in unl.origin
    empty = [o for o, l in zip(train.origin + val.origin, torch.cat([train.labels, val.labels])) if o == ("v", 7)]
    assert empty, "the checked-empty slice is a labelled (all background) slice"


def test_no_labelled_slice_raises_naming_the_volume():
    import SimpleITK as sitk

    img = np.zeros((4, 16, 16), np.float32)
    vol = Volume("v", img, sitk.GetImageFromArray(img), np.zeros((4, 16, 16), np.uint8), path="/data/v.nii.gz")
    with pytest.raises(InputError, match=r"no labelled slice along axis 2 in /data/v.nii.gz"):
        build_slice_sets([vol], [], 2, 16)
