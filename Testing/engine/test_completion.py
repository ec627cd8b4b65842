"""Completion from a few labelled slices: interpolation, fusion by distance, previews, CT windowing."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest
import SimpleITK as sitk

from semiseg.completion import CompletionConfig, ShapePrior
from semiseg.completion.fusion import TEMPERATURE, class_frequencies, fit_scale, fuse
from semiseg.completion.interpolation import interpolate_labels, slice_distance
from semiseg.completion.registration import SliceMotion
from semiseg.errors import InputError
from semiseg.io.slices import looks_like_ct, normalize_intensity
from semiseg.job.prepare import prepare
from semiseg.job.reading import load_job

from enginetesting import dice, drifting_disc, write_job, write_volume

BACKENDS = ["shape", "morphological"]  # the ITK wheel is in the test extra


def disc(radius: float, shape=(64, 64), centre=(32, 32)) -> np.ndarray:
    j, i = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.hypot(j - centre[0], i - centre[1]) < radius


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_disc_that_shrinks_between_two_slices_shrinks_in_between(backend):
    stack = np.zeros((11, 64, 64), np.uint8)
    stack[0], stack[10] = disc(20), disc(8)
    interp = interpolate_labels(stack, [0, 10], 2, backend)
    radius = [np.sqrt((interp.labels[s] == 1).sum() / np.pi) for s in range(11)]
    assert radius[0] == pytest.approx(20, abs=0.6) and radius[10] == pytest.approx(8, abs=0.6)
    assert all(a >= b for a, b in zip(radius, radius[1:])), radius  # monotone
    assert 11.5 < radius[5] < 16.5, radius  # about half way
    assert (interp.labels[5] == 1)[32, 32] and not (interp.labels[5] == 1)[32, 55]
    np.testing.assert_array_equal(interp.labels[[0, 10]], stack[[0, 10]])  # the user's slices untouched


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_checked_empty_slice_bounds_the_structure(backend):
    stack = np.zeros((11, 64, 64), np.uint8)
    stack[0], stack[10] = disc(12), disc(12)
    filled = interpolate_labels(stack, [0, 10], 2, backend)
    assert (filled.labels[1:10] == 1).all(axis=(1, 2)).sum() == 0 and (filled.labels[1:10] == 1).any(axis=(1, 2)).all()
    bounded = interpolate_labels(stack, [0, 5, 10], 2, backend)  # slice 5 checked and found empty
    assert not bounded.labels[1:10].any()


def test_each_class_is_interpolated_between_the_slices_that_hold_it():
    stack = np.zeros((9, 64, 64), np.uint8)
    stack[0][disc(10)] = 1
    stack[8][disc(10)] = 1
    stack[0][disc(6, centre=(10, 10))] = 2  # class 2 only on slice 0: it ends at slice 8, which lacks it
    interp = interpolate_labels(stack, [0, 8], 3)
    assert (interp.labels[4] == 1).sum() > 250 and not (interp.labels[1:8] == 2).any()


def test_registration_follows_the_image_between_the_labelled_slices():
    """The disc lies at column 24 on both labelled slices and swings to column 32 in between (2 pixels a slice):
    the shape-based interpolation keeps it at 24, the registration carries it along the image."""
    image, truth = drifting_disc([24, 26, 28, 30, 32, 30, 28, 26, 24])
    sparse = np.zeros_like(truth)
    sparse[[0, 8]] = truth[[0, 8]]
    shape = interpolate_labels(sparse, [0, 8], 2, "shape")
    registered = interpolate_labels(sparse, [0, 8], 2, "registration", SliceMotion(image))

    def centre(mask: np.ndarray) -> float:
        return float(np.nonzero(mask)[1].mean())

    assert centre(shape.labels[4]) == pytest.approx(24, abs=1)
    assert centre(registered.labels[4]) == pytest.approx(32, abs=1)
    assert dice(registered.labels[1:8], truth[1:8]) > 0.95 and dice(shape.labels[1:8], truth[1:8]) < 0.75
    np.testing.assert_array_equal(registered.labels[[0, 8]], sparse[[0, 8]])  # the user's slices untouched
    with pytest.raises(InputError, match="needs the image"):
        interpolate_labels(sparse, [0, 8], 2, "registration")


def test_beyond_the_labelled_range_the_registration_carries_the_outermost_shape_along_the_image():
    """One labelled slice (k = 1) of a disc drifting 2 pixels a slice: the shrinking shape beyond it follows the
    disc (registration), where the shape-based prior leaves it where it was drawn."""
    image, truth = drifting_disc([24, 26, 28, 30, 32, 34, 36, 38, 40], radius=10.0)
    sparse = np.zeros_like(truth)
    sparse[4] = truth[4]
    registered = interpolate_labels(sparse, [4], 2, "registration", SliceMotion(image))
    assert list(np.nonzero(registered.carried[1])[0]) == [0, 1, 2, 3, 5, 6, 7, 8]  # both sides, to the ends
    assert not registered.carried[0].any() and not interpolate_labels(sparse, [4], 2, "shape").carried.any()
    assert not registered.labels[[0, 1, 2, 3, 5, 6, 7, 8]].any()  # the labels stay the interpolation's (none here)
    uniform = np.full((2, *truth.shape), 0.5, np.float32)
    followed = fuse(uniform, registered, 1.0, scaled=False).argmax(0)
    still = fuse(uniform, interpolate_labels(sparse, [4], 2, "shape"), 1.0, scaled=False).argmax(0)

    def centre(mask: np.ndarray) -> float:
        return float(np.nonzero(mask)[1].mean())

    for s, column in ((1, 26), (7, 38)):  # 3 slices away: 6 pixels off where it was drawn
        assert centre(followed[s]) == pytest.approx(column, abs=1.5), s
        assert centre(still[s]) == pytest.approx(32, abs=1), s
    assert (followed[8] == 1).sum() < (followed[6] == 1).sum() < (followed[5] == 1).sum()  # and it still shrinks
    bounded = interpolate_labels(sparse, [2, 4], 2, "registration", SliceMotion(image))  # slice 2 checked empty
    assert list(np.nonzero(bounded.carried[1])[0]) == [3, 5, 6, 7, 8]  # nothing crosses a checked slice


def test_registration_fusion_weights_depend_only_on_the_labelled_slices():
    image, truth = drifting_disc([24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44])
    labeled = [0, 3, 6, 10]
    config = CompletionConfig(interpolation="registration")
    a = ShapePrior.build(truth, 2, labeled, 2, config, image)
    changed = truth.copy()
    changed[[4, 8]] = disc(20, centre=(20, 20))  # hidden slices' references change; the image does not
    b = ShapePrior.build(changed, 2, labeled, 2, config, image)
    assert (a.scale, a.fit) == (b.scale, b.fit) and a.fit["backend"] == "registration" and a.fit["left_out"] == 2
    np.testing.assert_array_equal(a.interpolation.sdf, b.interpolation.sdf)


def test_a_job_asks_for_the_registration_and_its_prior_follows_its_image(tmp_path):
    image, truth = drifting_disc([24, 26, 28, 30, 32, 30, 28, 26, 24])
    sparse = np.zeros_like(truth)
    sparse[[0, 4, 8]] = truth[[0, 4, 8]]
    write_volume(tmp_path / "image.nrrd", image)
    write_volume(tmp_path / "labels.nrrd", sparse)
    write_job(tmp_path, completion={"interpolation": "registration"})
    (volume,) = prepare(load_job(tmp_path)).volumes
    assert volume.prior.fit["backend"] == "registration" and volume.labeled == [0, 4, 8]
    filled = volume.prior.interpolation.labels  # slice-stack order: the IJK axis 2 is the array's first
    assert dice(filled[1:8], truth[1:8]) > 0.9


def test_distance_and_range():
    distance, inside = slice_distance(10, [2, 6])
    assert distance.tolist() == [2, 1, 0, 1, 2, 1, 0, 1, 2, 3]
    assert inside.tolist() == [False, False, True, True, True, True, True, False, False, False]


def _three_discs():
    stack = np.zeros((21, 64, 64), np.uint8)
    for s, r in ((2, 10), (10, 16), (18, 9)):
        stack[s] = disc(r)
    return stack


def test_fusion_weights_depend_only_on_the_labelled_slices():
    reference = np.zeros((21, 64, 64), np.uint8)
    for s in range(2, 19):
        reference[s] = disc(10 + 6 * np.sin(np.pi * (s - 2) / 16))
    labeled = [2, 6, 10, 18]
    scale, fit = fit_scale(reference, labeled, 2)
    assert fit["left_out"] == 2
    changed = reference.copy()
    changed[13] = disc(25, centre=(20, 40))  # a hidden slice's reference changes
    changed[4] = 0
    assert fit_scale(changed, labeled, 2) == (scale, fit)
    volume = np.moveaxis(reference, 0, 0)
    a = ShapePrior.build(volume, 2, labeled, 2)
    b = ShapePrior.build(np.moveaxis(changed, 0, 0), 2, labeled, 2)
    assert (a.scale, a.fit) == (b.scale, b.fit)


def test_fusion_keeps_the_users_slices_and_lets_the_network_decide_at_the_contour():
    stack = _three_discs()
    interp = interpolate_labels(stack, [2, 10, 18], 2)
    net = np.full((2, *stack.shape), 0.5, np.float32)
    net[1, 10] = 0.0  # the network disagrees on a labelled slice: the user wins
    net[0, 10] = 1.0
    fused = fuse(net, interp, 1.0)
    assert (fused.argmax(0)[[2, 10, 18]] == stack[[2, 10, 18]]).all()
    assert fused[1, 6][32, 32] > 0.99 and fused[1, 6][0, 0] < 0.01  # deep inside / far outside: the prior
    ring = np.abs(np.hypot(*(np.mgrid[0:64, 0:64] - 32)) - 13) < 1  # near the interpolated contour of slice 6
    sure = net.copy()
    sure[1, 6][ring], sure[0, 6][ring] = 0.999, 0.001
    assert fuse(sure, interp, 1.0)[1, 6][ring].mean() > fused[1, 6][ring].mean() + 0.2


def test_the_network_is_divided_by_the_class_frequencies_of_its_labelled_slices():
    """Scaled likelihoods: a network that knows nothing but the labelled slices' class frequencies leaves the prior
    as it is; undivided, the same network would pull every hidden slice toward the background."""
    stack = _three_discs()
    interp = interpolate_labels(stack, [2, 10, 18], 2)
    pi = class_frequencies(interp)
    assert pi[1] == pytest.approx((stack[[2, 10, 18]] == 1).mean()) and pi[1] < 0.2
    frequencies = np.broadcast_to(pi[:, None, None, None], (2, *stack.shape)).astype(np.float32)
    alone = fuse(np.full((2, *stack.shape), 0.5, np.float32), interp, 1.0, scaled=False)
    np.testing.assert_allclose(fuse(frequencies, interp, 1.0), alone, atol=1e-5)
    undivided = fuse(frequencies, interp, 1.0, scaled=False).argmax(0)
    hidden = [s for s in range(stack.shape[0]) if s not in (2, 10, 18)]
    assert (undivided[hidden] == 1).sum() < (alone.argmax(0)[hidden] == 1).sum()
    # slice 10 checked and found empty between two that hold the disc: on either side the prior has no opinion, and
    # the network decides alone with its own prior, undivided
    gap = stack.copy()
    gap[10] = 0
    silent = interpolate_labels(gap, [2, 10, 18], 2)
    pi = class_frequencies(silent)
    frequencies = np.broadcast_to(pi[:, None, None, None], (2, *stack.shape)).astype(np.float32)
    tempered = pi**TEMPERATURE / (pi**TEMPERATURE).sum()
    np.testing.assert_allclose(fuse(frequencies, silent, 1.0)[:, 6, 32, 32], tempered, atol=1e-5)


def test_beyond_the_labelled_range_the_prior_shrinks_and_the_network_decides():
    stack = _three_discs()
    interp = interpolate_labels(stack, [2, 10, 18], 2)
    alone = fuse(np.full((2, *stack.shape), 0.5, np.float32), interp, 1.0, scaled=False).argmax(0)
    area = (alone == 1).sum(axis=(1, 2))
    assert area[19] < area[18] and area[20] <= area[19]  # shrinking beyond the last labelled slice
    assert area[1] < area[2] and area[0] <= area[1]
    net = np.zeros((2, *stack.shape), np.float32)
    net[0] = 1.0
    # a sure network paints slice 19 whole: far outside the shrunk shape it is overruled
    net[1, 19], net[0, 19] = 1.0, 0.0
    fused = fuse(net, interp, 1.0).argmax(0)
    assert (fused[19] == 1)[32, 32] and not (fused[19] == 1)[0, 0]


def test_beyond_an_outermost_slice_checked_empty_the_structure_has_ended():
    """Accepting an empty slice beyond the structure bounds it: the slices beyond stay background where a fairly
    sure network paints the structure, as the shrinking shape kept them before the slice was accepted."""
    stack = np.zeros((21, 64, 64), np.uint8)
    for s, r in ((8, 10), (12, 16), (18, 9)):
        stack[s] = disc(r)
    net = np.zeros((2, *stack.shape), np.float32)
    net[0], net[1] = 0.8, 0.2
    net[1, :3, 22:42, 22:42], net[0, :3, 22:42, 22:42] = 0.8, 0.2  # the network paints slices 0-2
    before = fuse(net, interpolate_labels(stack, [8, 12, 18], 2), 1.0).argmax(0)
    after = fuse(net, interpolate_labels(stack, [3, 8, 12, 18], 2), 1.0).argmax(0)  # slice 3 checked, empty
    assert before[:3].sum() < (net[:, :3].argmax(0) == 1).sum()  # the shrinking shape overrules the most of it
    assert not after[:3].any()  # and the checked slice all of it
    # without the structure, the same empty slice bounds nothing: the network decides beyond it
    lone = stack.copy()
    lone[[8, 12, 18]] = 0
    assert after[:3].sum() == 0 < fuse(net, interpolate_labels(lone, [3], 2), 1.0).argmax(0)[:3].sum()


def test_an_outermost_slice_that_lacks_one_class_ends_that_class_beyond_it():
    """Class 2 (a disc beside class 1's, as the right ventricle beside the left) ends before class 1: the outermost
    labelled slice 3 holds class 1 only. Beyond it the network paints class 2; with ``class_ends`` the prior ends
    class 2 there, without it the network decides class 2 alone."""
    stack = np.zeros((21, 64, 64), np.uint8)
    beside = disc(7, (64, 64), (32, 48)).astype(bool)
    for s in (3, 8, 12, 18):
        stack[s] = disc(10, (64, 64), (32, 20))
    for s in (8, 12, 18):
        stack[s][beside] = 2
    net = np.zeros((3, *stack.shape), np.float32)
    net[0], net[1], net[2] = 0.8, 0.1, 0.1
    net[:, :3][:, :, beside] = np.array([0.1, 0.1, 0.8])[:, None, None]  # class 2 on slices 0-2
    interp = interpolate_labels(stack, [3, 8, 12, 18], 3)
    volume_ends = fuse(net, interp, 1.0, class_ends=False).argmax(0)
    class_ends = fuse(net, interp, 1.0, class_ends=True).argmax(0)
    assert (volume_ends[:3] == 2).sum() > 0 == (class_ends[:3] == 2).sum()
    assert np.array_equal(volume_ends[3:], class_ends[3:])  # nothing changes inside the labelled range
    assert np.array_equal(fuse(net, interp, 1.0).argmax(0), class_ends)  # the default
    # a class no labelled slice holds is not ended by the rule: the network keeps deciding it
    without = stack.copy()
    without[without == 2] = 1
    assert (fuse(net, interpolate_labels(without, [3, 8, 12, 18], 3), 1.0, class_ends=True).argmax(0)[:3] == 2).any()


def test_previews_in_the_progress_stream_of_a_cli_training(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((12, 48, 48), np.uint8)
    for s in range(1, 11):
        labels[s] = disc(8 + s, (48, 48), (24, 24))
    image = (0.2 + 0.6 * labels + 0.05 * rng.standard_normal(labels.shape)).astype(np.float32)
    sparse = np.zeros_like(labels)
    sparse[[2, 6, 9]] = labels[[2, 6, 9]]
    write_volume(tmp_path / "image.nrrd", image)
    write_volume(tmp_path / "labels.nrrd", sparse)
    write_job(
        tmp_path,
        method="supervised",
        completion={"preview_every": 0.001},
        train={"iterations": 6, "size": 32, "batch_labeled": 2, "val_every": 0, "threads": 1},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg", "train", "--job", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    previews = [e for e in events if e["event"] == "preview"]
    assert previews[0]["iteration"] == 0 and names.index("preview") < names.index(
        "start"
    )  # within seconds, before training
    assert len(previews) >= 3 and all(p["preliminary"] for p in previews)
    assert [p["iteration"] for p in previews] == sorted(p["iteration"] for p in previews)
    assert names.index("trained") > names.index("preview") and names[-1] == "done"
    folder = tmp_path / "run" / previews[-1]["dir"]
    assert {p.name for p in folder.iterdir()} == {"labels.nii.gz", "confidence.nii.gz", "entropy.nii.gz", "review.json"}
    final = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "run" / "predictions" / "image" / "labels.nii.gz")))
    np.testing.assert_array_equal(final[[2, 6, 9]], sparse[[2, 6, 9]])  # the user's slices as painted
    assert (final[4] == 1).sum() > 0.5 * (labels[4] == 1).sum()  # filled between them
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["prior"]["left_out"] == 1 and config["completion_resolved"]["enabled"] is True
    assert config["prior"]["backend"] == "registration"  # "auto": shape-based for the first preview, then the image


def ct_chest() -> sitk.Image:
    path = resources.files("slicerio") / "data" / "CTChest4.nrrd"
    return sitk.ReadImage(str(path))


def test_ct_is_windowed_on_the_body_not_the_padding():
    array = sitk.GetArrayFromImage(ct_chest()).astype(np.float32)
    assert looks_like_ct(array) and not looks_like_ct(array / 3000.0)
    assert np.percentile(array, 0.5) == -3024  # the scanner's padding
    normalised = normalize_intensity(array)
    bone = array > 300
    assert (normalised[bone] >= 0.999).mean() < 0.05  # bone keeps its contrast (39 % clipped on the padded window)
    assert normalised[array <= -1024].max() == 0.0 and (array < -2000).any()  # the padding is air


def test_ct_air_and_bone_painted_on_three_slices_come_out_on_them_and_their_neighbours(tmp_path):
    image = ct_chest()
    array = sitk.GetArrayFromImage(image)
    truth = np.zeros(array.shape, np.uint8)
    truth[array < -900] = 1  # air, as a threshold paints it (the padding outside the scan included)
    truth[array > 250] = 2  # bone
    painted = [8, 17, 26]
    sparse = np.zeros_like(truth)
    sparse[painted] = truth[painted]
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    labels = sitk.GetImageFromArray(sparse)
    labels.CopyInformation(image)
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    write_job(
        tmp_path,
        method="supervised",
        classes=["background", "air", "bone"],
        completion={"enabled": False},
        train={"iterations": 500, "size": 128, "batch_labeled": 4, "val_every": 0, "threads": 1, "seed": 0},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg", "train", "--job", str(tmp_path)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "run" / "predictions" / "image" / "labels.nii.gz")))

    def dice(slices, c):
        p, r = pred[slices] == c, truth[slices] == c
        return 2 * (p & r).sum() / (p.sum() + r.sum())

    for c, name in ((1, "air"), (2, "bone")):
        print(name, dice(painted, c), dice([s + 1 for s in painted], c))
        assert dice(painted, c) >= 0.9, (name, dice(painted, c))  # the network alone, completion off
        assert dice([s + 1 for s in painted], c) >= 0.8, (name, dice([s + 1 for s in painted], c))
