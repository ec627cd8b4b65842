"""Keep the largest island: which classes (decided from the user's labels, or set), what is removed, what is kept."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from semiseg.completion import ShapePrior
from semiseg.completion.interpolation import interpolate_labels
from semiseg.errors import InputError
from semiseg.inference import Predictor, predict_volume
from semiseg.inference.islands import island_sizes, keep_largest_island, one_piece_classes, resolve_islands
from semiseg.io.slices import labeled_slice_indices, load_volume, take_slices
from semiseg.job import load_job, prepare

from enginetesting import DATA, write_job


def _blobs() -> np.ndarray:
    """(8, 30, 30): class 1 a block with a speck far from it, class 2 two blocks of the same size."""
    labels = np.zeros((8, 30, 30), np.uint8)
    labels[1:7, 3:13, 3:13] = 1
    labels[6, 25, 25] = 1  # a speck of class 1
    labels[1:4, 18:24, 2:8] = 2
    labels[5:8, 18:24, 20:26] = 2  # a second, equal piece of class 2
    return labels


def test_island_sizes_are_the_face_connected_pieces_largest_first():
    labels = _blobs()
    assert island_sizes(labels == 1).tolist() == [600, 1]
    assert island_sizes(labels == 2).tolist() == [108, 108]
    assert island_sizes(labels == 3).tolist() == []
    diagonal = np.zeros((2, 2, 2), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True
    assert island_sizes(diagonal).tolist() == [1, 1]  # touching by a corner only: two islands


def test_keep_largest_island_removes_the_other_islands_of_the_chosen_classes_only():
    labels = _blobs()
    kept = keep_largest_island(labels, [1])
    assert kept[6, 25, 25] == 0 and (kept == 1).sum() == 600
    assert np.array_equal(kept == 2, labels == 2)  # not chosen: both pieces stay
    both = keep_largest_island(labels, [1, 2])
    assert island_sizes(both == 2).tolist() == [108]
    assert np.array_equal(keep_largest_island(labels, []), labels)


def test_the_users_labelled_slices_keep_their_islands():
    labels = _blobs()
    kept = keep_largest_island(labels, [1, 2], axis=2, labeled=[6])  # slice 6 along K holds the speck
    assert kept[6, 25, 25] == 1
    assert np.array_equal(kept[6], labels[6])
    assert (kept[1:4] == 2).sum() + (kept[7] == 2).sum() < (labels[1:4] == 2).sum() + (labels[7] == 2).sum()
    along_i = keep_largest_island(labels, [1], axis=0, labeled=[25])  # the speck's column along I
    assert along_i[6, 25, 25] == 1


def test_auto_keeps_a_class_that_is_one_piece_up_to_specks_and_leaves_lesions_alone():
    labels = _blobs()
    assert one_piece_classes([labels], 4) == [1]  # 600 of 601 voxels in one piece; class 2 half and half
    specks = labels.copy()
    specks[0, 0, :] = 1
    specks[0, 0, ::2] = 0  # 15 isolated voxels of class 1
    assert one_piece_classes([specks], 3) == [1]
    broken = labels.copy()
    broken[0:2, 28:30, 0:30] = 1  # a second piece of class 1 of 120 voxels: 83 % in the largest
    assert one_piece_classes([broken], 3) == []
    assert one_piece_classes([labels, broken], 3) == [1]  # summed over the volumes: 1200 of 1321 voxels
    assert one_piece_classes([labels, broken, broken], 3) == []  # 1800 of 2042
    assert one_piece_classes([labels, np.zeros_like(labels)], 3) == [1]  # a volume without the class says nothing


def test_resolve_islands_of_the_job_setting():
    names = ["background", "RV", "Myo", "LV"]
    assert resolve_islands("auto", names, [3, 1]) == [1, 3]
    assert resolve_islands(True, names, []) == [1, 2, 3]
    assert resolve_islands(False, names, [1]) == []
    assert resolve_islands(["LV", "RV"], names, []) == [1, 3]
    with pytest.raises(InputError, match=r"\['Aorta'\].*RV, Myo, LV"):
        resolve_islands(["Aorta"], names, [], "job.json")
    with pytest.raises(InputError, match="'auto', true, false or a list"):
        resolve_islands("yes", names, [])


def test_real_labels_filled_from_three_slices_are_one_piece_per_structure():
    """ACDC's three structures and LA's atrium, from 3 well-spread slices filled between: one piece each."""
    for dataset, case, classes in (("acdc", "patient003_frame01", 4), ("la", None, 2)):
        root = DATA / dataset
        name = case or json.loads((root / "splits.json").read_text())["volumes"][0]
        volume = load_volume(root / "images" / f"{name}.nii.gz", root / "labels" / f"{name}.nii.gz", classes)
        stack = np.asarray(take_slices(volume.labels, 2))
        held = labeled_slice_indices(volume.labels, 2)
        kept = [held[len(held) // 6], held[len(held) // 2], held[-1 - len(held) // 6]]
        sparse = np.zeros_like(stack)
        sparse[kept] = stack[kept]
        filled = interpolate_labels(sparse, kept, classes, "shape").labels
        assert one_piece_classes([filled], classes) == list(range(1, classes)), dataset


def test_the_job_decides_and_the_run_keeps_it_for_predict(toy_case, tmp_path):
    job_dir = write_job(toy_case["dir"])
    prepared = prepare(load_job(job_dir))
    assert prepared.islands == [1, 2]  # the disc and the ring are one piece each in the labelled slices, filled
    write_job(toy_case["dir"], keep_largest_island=["class 2"])
    assert prepare(load_job(job_dir)).islands == [2]
    for bad, message in ((["Liver"], "'Liver'"), ("yes", "keep_largest_island")):
        write_job(toy_case["dir"], keep_largest_island=bad)
        proc = subprocess.run([sys.executable, "-m", "semiseg", "train", "--job", str(job_dir)], capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 2 and message in proc.stderr and "job.json" in proc.stderr, proc.stderr


def test_predict_keeps_the_runs_classes_or_what_the_command_says(toy_case, tmp_path):
    run = tmp_path / "run"
    train = [sys.executable, "-m", "semiseg", "train", "--image", str(toy_case["image"]), "--labels",
             str(toy_case["labels"]), "--iterations", "150", "--size", "32", "--batch-labeled", "4", "--device", "cpu",
             "--method", "supervised", "--no-predict", "--preview-every", "0", "--out", str(run)]
    proc = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert Predictor(run / "checkpoint.pt", "cpu").islands == [1, 2]  # "auto": the disc and the ring are one piece
    toy = sitk.ReadImage(str(toy_case["image"]))
    twice = sitk.GetImageFromArray(np.tile(sitk.GetArrayFromImage(toy), (1, 2, 2)))  # four discs in rings
    twice.SetSpacing(toy.GetSpacing())
    sitk.WriteImage(twice, str(tmp_path / "four.nrrd"))
    pieces = {}
    for choice in ("auto", "all", "none"):
        out = tmp_path / choice
        proc = subprocess.run(
            [sys.executable, "-m", "semiseg", "predict", "--run", str(run), "--image", str(tmp_path / "four.nrrd"),
             "--out", str(out), "--keep-largest-island", choice], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
        pieces[choice] = [len(island_sizes(labels == c)) for c in (1, 2)]
    assert min(pieces["none"]) >= 4, pieces  # the network finds the four discs and their rings
    assert pieces["auto"] == pieces["all"] == [1, 1]

    # a labelled volume's completion is left as fused: the four discs of its labelled slices stay four
    four = load_volume(tmp_path / "four.nrrd")
    full = np.tile(toy_case["full_labels"], (1, 2, 2))
    sparse = np.zeros_like(full)
    sparse[[1, 4]] = full[[1, 4]]
    predictor = Predictor(run / "checkpoint.pt", "cpu")
    prior = ShapePrior.build(sparse, 2, [1, 4], 3, image=four.image)
    fused = predict_volume(predictor, four, 2, prior, [1, 4])["labels"]
    alone = predict_volume(predictor, four, 2, None, [1, 4])["labels"]
    assert len(island_sizes(fused == 1)) >= 4
    raw = predictor.probabilities(four.image, 2).argmax(0)
    assert len(island_sizes(alone[[0, 2, 3, 5]] == 1)) == 1  # the network alone: one island off the labelled slices
    assert np.array_equal(alone[[1, 4]], raw[[1, 4]]) and len(island_sizes(raw[1] == 1)) >= 4  # on them, all kept
