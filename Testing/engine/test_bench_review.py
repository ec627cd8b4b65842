"""``semiseg bench review``: the simulated correction loop on real ACDC scans at a tiny budget, and its choice
of the slice to correct."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semiseg.errors import InputError
from semiseg_bench.common import read_jsonl
from semiseg_bench.review import Scan, _choose

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(importlib.util.find_spec("itk") is None, reason="interpolation needs the bench extra (ITK)")
def test_review_loop_smoke_on_acdc(tmp_path):
    if not (DATA / "acdc" / "splits.json").exists():
        pytest.fail(f"the ACDC data is missing: {DATA / 'acdc'} (see ../shared/data/README.md)")
    out = tmp_path / "review.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "semiseg",
        "bench",
        "review",
        "--dataset",
        "acdc",
        "--data",
        str(DATA / "acdc"),
        "--scans",
        "1",
        "--k",
        "2",
        "--held-out",
        "1",
        "--unlabeled",
        "1",
        "--corrections",
        "2",
        "--iterations",
        "3",
        "--retrain-iterations",
        "2",
        "--size",
        "32",
        "--batch",
        "2",
        "--method",
        "supervised",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_jsonl(out)
    assert [(r["strategy"], r["corrections"]) for r in records] == [
        (s, n) for s in ("review", "confidence", "uncertainty", "random", "interpolation") for n in range(3)
    ]
    by = {(r["strategy"], r["corrections"]): r for r in records}
    for strategy in ("review", "confidence", "uncertainty", "random"):
        sizes = [sum(map(len, by[(strategy, n)]["labeled"])) for n in range(3)]
        assert sizes == [sizes[0], sizes[0] + 1, sizes[0] + 2]  # each correction labels one new slice
        assert sizes[0] == 2 * 2  # one patient, both frames, 2 slices each
        assert by[(strategy, 2)]["seconds"] > by[(strategy, 0)]["seconds"] > 0
        assert all(0 <= by[(strategy, n)]["held_out_dice"] <= 1 for n in range(3))
        assert all(0 <= by[(strategy, n)]["held_out_dice_raw"] <= 1 for n in range(3))
    for n in range(3):  # interpolation follows the first loop's slices (the review list's), without a network
        assert by[("interpolation", n)]["labeled"] == by[("review", n)]["labeled"]
        assert by[("interpolation", n)]["held_out_dice"] is None
    assert all(0 < r["study_dice"] <= 1 for r in records)
    assert out.with_suffix(".png").read_bytes()[:8] == PNG
    last = proc.stdout.rstrip().splitlines()
    assert last[-1].startswith("| interpolation |") and last[-5].startswith("| review |")

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # every strategy done: nothing reruns
    assert again.returncode == 0 and len(read_jsonl(out)) == len(records) and '"strategy"' not in again.stdout


def test_dev_patients_leave_the_unlabelled_pool_and_are_scored_with_the_method_options(tmp_path):
    """``--dev N``: the last N pool patients are development volumes (labelled, never unlabelled data), scored
    each round as ``dev_dice``; ``--option`` reaches the method, and an option it lacks ends the run with exit 2."""
    import json

    from semiseg.io.images import volume_name
    from semiseg_bench.review import load_study

    root = DATA / "acdc"
    if not (root / "splits.json").exists():
        pytest.fail(f"the ACDC data is missing: {root} (see ../shared/data/README.md)")
    train = json.loads((root / "splits.json").read_text())["train"]
    _, _, extra, _, dev = load_study(root, "acdc", 1, 2, 0, unlabeled=-1, dev=2)
    assert sorted({v.name.split("_")[0] for v in dev}) == train[-2:]  # both frames of the pool's last 2 patients
    assert len(dev) == 4 and all(v.labels is not None and v.labels.any() for v in dev)
    assert {v.name for v in extra}.isdisjoint(v.name for v in dev)
    pool = [volume_name(f) for p in train[1:] for f in (root / "images").glob(f"{p}_frame*.nii.gz")]
    assert sorted(v.name for v in extra + dev) == sorted(pool)  # together: the whole pool
    with pytest.raises(InputError, match="--dev"):
        load_study(root, "acdc", 1, 2, 0, dev=len(train) - 1)  # nothing left to be unlabelled

    out = tmp_path / "dev.jsonl"
    cmd = [sys.executable, "-m", "semiseg", "bench", "review", "--data", str(root), "--scans", "1", "--k", "2"]
    cmd += ["--held-out", "0", "--unlabeled", "1", "--dev", "1", "--corrections", "0", "--strategies", "confidence"]
    cmd += ["--iterations", "3", "--size", "32", "--batch", "2", "--method", "unimatch", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd + ["--option", "tau=0.5"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = read_jsonl(out)
    assert 0 <= record["dev_dice"] <= 1 and 0 <= record["dev_dice_raw"] <= 1 and record["held_out_dice"] is None
    assert record["budget"]["dev"] == 1 and record["budget"]["options"] == {"tau": 0.5}
    bad = subprocess.run(cmd + ["--option", "nosuch=1"], capture_output=True, text=True, timeout=600, env=env)
    assert bad.returncode == 2 and "nosuch" in bad.stderr, bad.stderr[-2000:]


def _scan(slices: int, labeled: set[int]) -> Scan:
    from semiseg.io.slices import Volume

    labels = np.zeros((slices, 4, 4), np.uint8)
    return Scan(Volume("v", np.zeros((slices, 4, 4), np.float32), None, labels), labeled)  # type: ignore[arg-type]


def test_the_least_confident_unlabelled_slice_of_the_whole_study_is_corrected_first():
    study = [_scan(4, {0}), _scan(3, {2})]
    conf = [np.full((4, 4, 4), 0.9, np.float32), np.full((3, 4, 4), 0.8, np.float32)]
    conf[0][0] = 0.1  # labelled: never chosen
    conf[0][3] = 0.5
    conf[1][1] = 0.4  # the least confident unlabelled slice, in the second scan
    done = [{"labels": np.zeros(c.shape, np.uint8), "confidence": c} for c in conf]
    assert _choose("confidence", study, done, np.random.default_rng(0)) == (1, 1)
    study[1].labeled.add(1)
    assert _choose("confidence", study, done, np.random.default_rng(0)) == (0, 3)
    picks = {_choose("random", study, done, np.random.default_rng(seed)) for seed in range(40)}
    assert picks == {(0, 1), (0, 2), (0, 3), (1, 0)}  # random: any unlabelled slice, never a labelled one


def test_the_uncertainty_strategy_takes_the_slice_with_the_most_uncertain_pixels():
    study = [_scan(4, {0}), _scan(3, {2})]
    conf = [np.full((4, 4, 4), 0.99, np.float32), np.full((3, 4, 4), 0.99, np.float32)]
    conf[0][0] = 0.1  # labelled: never chosen
    conf[0][3, :2] = 0.5  # 8 pixels at 0.5: the most uncertain mass
    conf[1][1, 0, 0] = 0.2  # the lowest mean over its region of interest (one pixel): the review list's first
    done = [{"labels": np.zeros(c.shape, np.uint8), "confidence": c} for c in conf]
    assert _choose("uncertainty", study, done, np.random.default_rng(0)) == (0, 3)
    assert _choose("confidence", study, done, np.random.default_rng(0)) == (1, 1)



def test_the_review_strategy_takes_the_first_slice_of_the_study_review_list():
    study = [_scan(4, {0}), _scan(3, {2})]
    conf = [np.full((4, 4, 4), 0.9, np.float32), np.full((3, 4, 4), 0.9, np.float32)]
    conf[0][3] = 0.2  # the least confident: first by confidence, but little to gain
    gain = [np.array([0.9, 0.0, 0.01, 0.02]), np.array([0.0, 0.05, 0.3])]  # labelled slices: never chosen
    done = [{"labels": np.zeros(c.shape, np.uint8), "confidence": c, "gain": g} for c, g in zip(conf, gain)]
    assert _choose("review", study, done, np.random.default_rng(0)) == (1, 1)
    assert _choose("confidence", study, done, np.random.default_rng(0)) == (0, 3)
    study[1].labeled.add(1)
    assert _choose("review", study, done, np.random.default_rng(0)) == (0, 3)
