"""Tests of semiseg.inference.metrics against hand-computed values (medpy conventions)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from semiseg.inference import metrics
from semiseg.inference.metrics import asd, assd, dice, evaluate_volume, hd95, jaccard, surface_distances, to_jsonable

SQRT2 = math.sqrt(2.0)


def mask(shape, *voxels):
    """Boolean array of ``shape`` with the given index tuples (or slices) set."""
    out = np.zeros(shape, dtype=bool)
    for v in voxels:
        out[v] = True
    return out


# --------------------------------------------------------------------------- overlap


OVERLAP_CASES = [
    # (name, pred, ref, dice, jaccard)
    ("4 vs 2, overlap 2", mask((6,), slice(0, 4)), mask((6,), slice(2, 4)), 2 * 2 / 6, 2 / 4),
    ("identical", mask((3, 3), (1, 1), (0, 2)), mask((3, 3), (1, 1), (0, 2)), 1.0, 1.0),
    ("disjoint", mask((3, 3), (0, 0)), mask((3, 3), (2, 2)), 0.0, 0.0),
    ("3 vs 3, overlap 2 (1D shift)", np.array([1, 1, 1, 0]), np.array([0, 1, 1, 1]), 4 / 6, 2 / 4),
    ("3D, 8 vs 4, overlap 4", mask((2, 2, 3), (slice(None), slice(None), slice(0, 2))),
     mask((2, 2, 3), (0, slice(None), slice(0, 2))), 2 * 4 / 12, 4 / 8),
    ("non-zero counts as foreground", np.array([[0, 7], [3, 0]]), np.array([[0, 1], [0, 0]]), 2 / 3, 1 / 2),
]


@pytest.mark.parametrize("name,pred,ref,d,j", OVERLAP_CASES, ids=[c[0] for c in OVERLAP_CASES])
def test_dice_jaccard_known_values(name, pred, ref, d, j):
    assert dice(pred, ref) == pytest.approx(d)
    assert jaccard(pred, ref) == pytest.approx(j)
    assert dice(ref, pred) == pytest.approx(d)
    assert jaccard(ref, pred) == pytest.approx(j)


# --------------------------------------------------------------------------- surface distances


def test_surface_distances_two_squares_shifted_by_one():
    # 3x3 squares, B one row below A. The surface is the 8-voxel ring; the centre is interior.
    a = mask((7, 7), (slice(1, 4), slice(1, 4)))
    b = mask((7, 7), (slice(2, 5), slice(1, 4)))
    # A's ring in C order: (1,1) (1,2) (1,3) (2,1) (2,3) (3,1) (3,2) (3,3). Row 1 is one above B;
    # (3,2) lies on B's interior centre, one step from B's ring; the others lie on B's ring.
    expected = [1, 1, 1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose(surface_distances(a, b, None), expected)
    # Pooled 8 ones and 8 zeros: the 95th percentile is 1; each one-way mean is 4/8.
    assert hd95(a, b) == pytest.approx(1.0)
    assert asd(a, b) == pytest.approx(0.5)
    assert asd(b, a) == pytest.approx(0.5)
    assert assd(a, b) == pytest.approx(0.5)
    # Rows 3 mm, columns 0.7 mm: row 1 is 3 mm from B; (3,2) is now nearest to (3,1), 0.7 mm
    # along the row, instead of 3 mm up to (2,2). Mean (3 * 3 + 0.7) / 8.
    np.testing.assert_allclose(surface_distances(a, b, (3.0, 0.7)), [3, 3, 3, 0, 0, 0, 0.7, 0])
    assert asd(a, b, spacing=(3.0, 0.7)) == pytest.approx(9.7 / 8)
    # Pooled: 6 values of 3 (two rows), 2 of 0.7, 8 zeros -> the 95th percentile is 3.
    assert hd95(a, b, spacing=(3.0, 0.7)) == pytest.approx(3.0)


def test_surface_counts_array_border():
    # The whole 1D array is foreground: voxels 0 and 4 lie on the array edge and are surface
    # (border_value=0), voxels 1..3 are interior. Distances to a single voxel at 2: 2 and 2.
    full = np.ones(5, dtype=bool)
    np.testing.assert_allclose(surface_distances(full, mask((5,), 2)), [2.0, 2.0])
    # The reverse: from voxel 2 to the nearest surface voxel of the full array (0 or 4).
    np.testing.assert_allclose(surface_distances(mask((5,), 2), full), [2.0])


def test_surface_distances_empty_source_and_empty_target():
    assert surface_distances(np.zeros(4, bool), mask((4,), 1)).shape == (0,)
    with pytest.raises(ValueError):
        surface_distances(mask((4,), 1), np.zeros(4, bool))


SHIFT_CASES = []
for k in (1, 2, 3):
    for axis in (0, 1, 2):
        for spacing in ((1.0, 1.0, 1.0), (3.0, 2.0, 0.5)):
            SHIFT_CASES.append((k, axis, spacing))


@pytest.mark.parametrize("k,axis,spacing", SHIFT_CASES)
def test_thin_plates_shifted_by_k(k, axis, spacing):
    # A one-voxel-thick 4x4 plate normal to `axis` and its copy k voxels further along `axis`:
    # every voxel is a surface voxel and its nearest partner is exactly k steps away along `axis`.
    shape = [10, 10, 10]
    plate = [slice(2, 6), slice(2, 6), slice(2, 6)]
    plate[axis] = 2
    a = mask(tuple(shape), tuple(plate))
    b = np.roll(a, k, axis=axis)
    want = k * spacing[axis]
    assert hd95(a, b, spacing) == pytest.approx(want)
    assert asd(a, b, spacing) == pytest.approx(want)
    assert asd(b, a, spacing) == pytest.approx(want)
    assert assd(a, b, spacing) == pytest.approx(want)
    assert hd95(a, b) == pytest.approx(k)  # unit spacing by default
    np.testing.assert_allclose(surface_distances(a, b, spacing), np.full(16, want))


def test_single_voxels_shifted_diagonally():
    a = mask((6, 6, 6), (1, 1, 1))
    b = mask((6, 6, 6), (3, 2, 1))
    assert hd95(a, b) == pytest.approx(math.sqrt(5))
    assert hd95(a, b, (2.0, 1.0, 9.0)) == pytest.approx(math.sqrt(16 + 1))
    assert asd(a, b, (2.0, 1.0, 9.0)) == pytest.approx(math.sqrt(17))


ASYMMETRIC_CASES = [
    # (name, pred, ref, spacing, asd(pred,ref), asd(ref,pred), hd95)
    # Point at the centre of a 3x3 square: the point is 1 from the ring; the ring's 4 edge
    # voxels are 1 and its 4 corners sqrt(2) from the point. Pooled [1]*5 + [sqrt2]*4 -> sqrt2.
    ("point in square", mask((5, 5), (2, 2)), mask((5, 5), (slice(1, 4), slice(1, 4))), None,
     1.0, (4 + 4 * SQRT2) / 8, SQRT2),
    # Same with 2 mm rows: the point is 1 from (2,1)/(2,3); the ring: 2, 2, 1, 1 and 4 x sqrt(5).
    ("point in square, anisotropic", mask((5, 5), (2, 2)), mask((5, 5), (slice(1, 4), slice(1, 4))),
     (2.0, 1.0), 1.0, (6 + 4 * math.sqrt(5)) / 8, math.sqrt(5)),
    # 1D: point at 0, segment 2..6 whose surface is {2, 6}. d(pred->ref)=[2], d(ref->pred)=[2, 6].
    # Pooled [2, 2, 6]: the 95th percentile interpolates 2 + 0.9 * (6 - 2) = 5.6.
    ("1D point and segment", mask((10,), 0), mask((10,), slice(2, 7)), None, 2.0, 4.0, 5.6),
]


@pytest.mark.parametrize("name,pred,ref,spacing,a_pr,a_rp,h", ASYMMETRIC_CASES,
                         ids=[c[0] for c in ASYMMETRIC_CASES])
def test_asymmetric_asd(name, pred, ref, spacing, a_pr, a_rp, h):
    assert asd(pred, ref, spacing) == pytest.approx(a_pr)
    assert asd(ref, pred, spacing) == pytest.approx(a_rp)
    assert asd(pred, ref, spacing) != pytest.approx(asd(ref, pred, spacing))
    assert assd(pred, ref, spacing) == pytest.approx((a_pr + a_rp) / 2)
    assert assd(ref, pred, spacing) == pytest.approx((a_pr + a_rp) / 2)
    assert hd95(pred, ref, spacing) == pytest.approx(h)
    assert hd95(ref, pred, spacing) == pytest.approx(h)


# --------------------------------------------------------------------------- empty masks

EMPTY = np.zeros((4, 4), dtype=bool)
SOME = mask((4, 4), (1, 1), (1, 2))

EMPTY_CASES = [
    # (name, pred, ref, dice, jaccard, distance value (0.0 or NaN))
    ("both empty", EMPTY, EMPTY, 1.0, 1.0, 0.0),
    ("pred empty", EMPTY, SOME, 0.0, 0.0, math.nan),
    ("ref empty", SOME, EMPTY, 0.0, 0.0, math.nan),
]


@pytest.mark.parametrize("name,pred,ref,d,j,dist", EMPTY_CASES, ids=[c[0] for c in EMPTY_CASES])
def test_empty_mask_conventions(name, pred, ref, d, j, dist):
    assert dice(pred, ref) == d
    assert jaccard(pred, ref) == j
    for fn in (hd95, asd, assd):
        value = fn(pred, ref)
        assert isinstance(value, float)
        if math.isnan(dist):
            assert math.isnan(value), fn.__name__
        else:
            assert value == dist, fn.__name__


# --------------------------------------------------------------------------- shape and spacing errors


@pytest.mark.parametrize("fn", [dice, jaccard, hd95, asd, assd, surface_distances])
def test_mask_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        fn(np.ones((2, 3)), np.ones((3, 2)))


def test_spacing_length_mismatch_raises():
    with pytest.raises(ValueError):
        hd95(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        asd(np.ones((3, 3)), np.ones((3, 3)), spacing=(1.0, -1.0))


# --------------------------------------------------------------------------- evaluate_volume


def _three_class_volume():
    """Shape (4, 8, 8), spacing (3, 2, 0.5); class 2 absent from both maps.

    Class 1: reference line z=1, y=1, x=1..4; prediction the same line at z=2. Dice 0, every
    distance 1 voxel = 3 mm (shift along axis 0).
    Class 3: reference line z=3, y=5, x=2..5; prediction its first two voxels x=2..3.
    Dice 2*2/6, Jaccard 2/4. pred->ref: [0, 0]; ref->pred: [0, 0, 1, 2] voxels (x 0.5 mm).
    Pooled [0, 0, 0, 0, 1, 2]: 95th percentile 1 + 0.75 * (2 - 1) = 1.75 voxels = 0.875 mm.
    """
    ref = np.zeros((4, 8, 8), dtype=np.uint8)
    pred = np.zeros_like(ref)
    ref[1, 1, 1:5] = 1
    pred[2, 1, 1:5] = 1
    ref[3, 5, 2:6] = 3
    pred[3, 5, 2:4] = 3
    return pred, ref, (3.0, 2.0, 0.5)


EXPECTED_CLASS_1 = {"dice": 0.0, "jaccard": 0.0, "hd95_vox": 1.0, "asd_vox": 1.0, "hd95_mm": 3.0, "asd_mm": 3.0}
EXPECTED_CLASS_3 = {"dice": 2 / 3, "jaccard": 0.5, "hd95_vox": 1.75, "asd_vox": 0.0, "hd95_mm": 0.875, "asd_mm": 0.0}
EXPECTED_MEAN = {k: (EXPECTED_CLASS_1[k] + EXPECTED_CLASS_3[k]) / 2 for k in EXPECTED_CLASS_1}


@pytest.mark.parametrize("num_classes", [4, None])
def test_evaluate_volume_three_classes_one_absent(num_classes):
    pred, ref, spacing = _three_class_volume()
    result = evaluate_volume(pred, ref, num_classes=num_classes, spacing=spacing)
    assert list(result["classes"]) == ["1", "2", "3"]
    assert result["spacing"] == [3.0, 2.0, 0.5]
    c1, c2, c3 = (result["classes"][n] for n in ("1", "2", "3"))
    for key, want in EXPECTED_CLASS_1.items():
        assert c1[key] == pytest.approx(want), key
    for key, want in EXPECTED_CLASS_3.items():
        assert c3[key] == pytest.approx(want), key
    assert c1["present"] is True and c3["present"] is True
    assert c2["present"] is False
    assert c2["dice"] == 1.0 and c2["hd95_mm"] == 0.0  # both-empty convention
    # The absent class is left out: the mean is over classes 1 and 3 only.
    for key, want in EXPECTED_MEAN.items():
        assert result["mean"][key] == pytest.approx(want), key
    assert result["mean"]["dice"] == pytest.approx(1 / 3)


def test_evaluate_volume_class_names_and_default_spacing():
    pred, ref, _ = _three_class_volume()
    result = evaluate_volume(pred, ref, num_classes=4, class_names=["background", "RV", "Myo", "LV"])
    assert list(result["classes"]) == ["RV", "Myo", "LV"]
    assert result["spacing"] == [1.0, 1.0, 1.0]
    assert result["classes"]["RV"]["hd95_mm"] == pytest.approx(1.0)  # unit spacing: mm == voxels
    assert result["classes"]["LV"]["hd95_mm"] == pytest.approx(1.75)
    with pytest.raises(ValueError):
        evaluate_volume(pred, ref, num_classes=4, class_names=["background", "RV"])


def test_evaluate_volume_nan_class_is_ignored_in_mean():
    # Class 1 perfect, class 2 only predicted: its distances are NaN and nanmean skips them,
    # while its Dice of 0 still counts.
    ref = np.zeros((3, 5, 5), dtype=np.int16)
    ref[1, 1:3, 1:3] = 1
    pred = ref.copy()
    pred[1, 4, 4] = 2
    result = evaluate_volume(pred, ref, num_classes=3)
    c2 = result["classes"]["2"]
    assert c2["present"] is True and c2["dice"] == 0.0
    assert math.isnan(c2["hd95_vox"]) and math.isnan(c2["asd_mm"])
    assert result["mean"]["dice"] == pytest.approx(0.5)
    assert result["mean"]["hd95_vox"] == pytest.approx(0.0)
    assert result["mean"]["asd_mm"] == pytest.approx(0.0)


def test_evaluate_volume_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 8, 8\).*\(4, 8, 7\)"):
        evaluate_volume(np.zeros((4, 8, 8), int), np.zeros((4, 8, 7), int))


def test_evaluate_volume_label_out_of_range_raises():
    a = np.zeros((2, 2, 2), int)
    a[0, 0, 0] = 5
    with pytest.raises(ValueError):
        evaluate_volume(a, np.zeros_like(a), num_classes=4)


# --------------------------------------------------------------------------- JSON


def test_to_jsonable_converts_nan_inf_and_numpy_scalars():
    obj = {
        "nan": float("nan"),
        "np_nan": np.float32("nan"),
        "inf": [np.float64("inf"), -math.inf],
        "f": np.float32(1.5),
        "i": np.int64(3),
        "b": np.bool_(True),
        "nested": ({"x": np.float64(2.25)},),
        "arr": np.array([1.0, np.nan]),
        "s": "text",
    }
    out = to_jsonable(obj)
    assert out == {
        "nan": None,
        "np_nan": None,
        "inf": [None, None],
        "f": 1.5,
        "i": 3,
        "b": True,
        "nested": [{"x": 2.25}],
        "arr": [1.0, None],
        "s": "text",
    }
    assert type(out["f"]) is float and type(out["i"]) is int and type(out["b"]) is bool
    json.dumps(out, allow_nan=False)


def test_evaluate_volume_result_is_strict_json_after_conversion():
    ref = np.zeros((3, 5, 5), dtype=np.int16)
    ref[1, 1:3, 1:3] = 1
    pred = ref.copy()
    pred[1, 4, 4] = 2
    text = json.dumps(to_jsonable(evaluate_volume(pred, ref)), allow_nan=False)
    assert json.loads(text)["classes"]["2"]["hd95_mm"] is None


def test_public_names():
    for name in ("dice", "jaccard", "surface_distances", "hd95", "asd", "assd", "evaluate_volume", "to_jsonable"):
        assert name in metrics.__all__


def _reference_distances(a, b, spacing):
    """The medpy recipe written out on the full array (no cropping), for comparison."""
    from scipy import ndimage

    fp = ndimage.generate_binary_structure(a.ndim, 1)
    sa = a ^ ndimage.binary_erosion(a, structure=fp, iterations=1)
    sb = b ^ ndimage.binary_erosion(b, structure=fp, iterations=1)
    return ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cropping_matches_full_array_recipe(seed):
    # Random blobs, some touching the array edge: the cropped computation must equal the plain one.
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    a = ndimage.binary_opening(rng.random((9, 11, 8)) > 0.45)
    b = ndimage.binary_opening(rng.random((9, 11, 8)) > 0.45)
    a[0, :3, :3] = True
    b[3:6, 4:7, 2:5] = True
    sp = (2.5, 0.8, 1.1)
    d_ab, d_ba = _reference_distances(a, b, sp), _reference_distances(b, a, sp)
    np.testing.assert_allclose(surface_distances(a, b, sp), d_ab)
    assert hd95(a, b, sp) == pytest.approx(np.percentile(np.hstack([d_ab, d_ba]), 95))
    assert asd(a, b, sp) == pytest.approx(d_ab.mean())
    assert assd(a, b, sp) == pytest.approx((d_ab.mean() + d_ba.mean()) / 2)
