"""The benchmarks stay runnable: a tiny smoke run of each ``semiseg bench`` command on the real data, and unit
tests of the clinician scenario's pieces (which slices are kept and scored, the contour-interpolation row).

The full runs and their budgets are in docs/BENCHMARKS.md; these only check that each benchmark runs end
to end, writes well-formed results and a figure, and prints its summary table last.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from semiseg.errors import InputError
from semiseg_bench import clinician
from semiseg_bench.common import linear_fit, read_jsonl
from semiseg_bench.plots import best_row, dice_by_k, plot_dice_vs_k, plot_learning_curve

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HAVE_ITK = importlib.util.find_spec("itk") is not None
needs_itk = pytest.mark.skipif(
    not HAVE_ITK,
    reason="contour interpolation needs the bench extra: pip install itk-morphologicalcontourinterpolation",
)
PNG = b"\x89PNG\r\n\x1a\n"


def _bench(args: list[str], cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg", "bench", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _table_is_last(stdout: str, header: str, last_row: str) -> None:
    lines = stdout.rstrip().splitlines()
    assert lines[-1].split()[0] == last_row, lines[-5:]
    assert any(header in line for line in lines[-12:]), lines[-12:]


# -- which slices are kept and which are scored --------------------------------------------
def test_kept_slices_are_k_distinct_evenly_spread_and_away_from_the_ends():
    assert clinician.keep_slices(range(10), 1) == [5]
    assert clinician.keep_slices(range(10), 2) == [2, 7]
    assert clinician.keep_slices(range(3, 13), 5) == [4, 6, 8, 10, 12]
    assert clinician.keep_slices([1, 4, 9], 5) == [1, 4, 9]  # k >= n keeps all
    for n in range(1, 40):
        cand = list(range(100, 100 + 2 * n, 2))  # not contiguous
        for k in range(1, n + 1):
            kept = clinician.keep_slices(cand, k)
            assert len(kept) == k and len(set(kept)) == k and kept == sorted(kept) and set(kept) <= set(cand)
            gaps = np.diff([cand.index(i) for i in kept])
            assert gaps.size == 0 or gaps.max() - gaps.min() <= 1  # evenly spread
            margins = (cand.index(kept[0]), n - 1 - cand.index(kept[-1]))
            assert abs(margins[0] - margins[1]) <= 1  # centred: as far from the first slice as from the last


def test_hidden_slices_never_include_kept_ones_and_scoring_ignores_kept_slices():
    rng = np.random.default_rng(0)
    ref = np.zeros((12, 20, 20), np.uint8)
    ref[2:10, 5:15, 5:15] = 1
    ref[2:10, 8:12, 8:12] = 2
    kept = clinician.keep_slices([z for z in range(12) if ref[z].any()], 3)
    hidden = clinician.hidden_slices(12, kept)
    assert sorted(hidden + kept) == list(range(12)) and not set(hidden) & set(kept)
    args = (kept, 2, 3, (1.0, 1.0, 1.0), ["bg", "a", "b"])
    # garbage on the kept slices only: a perfect score (the kept slices are not scored)
    pred = ref.copy()
    pred[kept] = rng.integers(0, 3, pred[kept].shape)
    assert clinician.score_hidden(pred, ref, *args)["dice"] == 1.0
    # right on the kept slices only (what the user already gave): nothing on the hidden ones
    only_kept = clinician.sparsify(ref, 2, kept)
    score = clinician.score_hidden(only_kept, ref, *args)
    assert score["dice"] == 0.0 and set(score["classes"]) == {"a", "b"}


def test_sparsify_keeps_exactly_the_kept_slices_along_the_axis():
    labels = np.ones((4, 5, 6), np.uint8)
    assert np.flatnonzero(clinician.sparsify(labels, 2, [1, 3]).any(axis=(1, 2))).tolist() == [1, 3]  # K: numpy axis 0
    assert np.flatnonzero(clinician.sparsify(labels, 0, [0, 5]).any(axis=(0, 1))).tolist() == [0, 5]  # I: numpy axis 2


@needs_itk
def test_contour_interpolation_fills_between_two_labelled_slices():
    z, y, x = np.mgrid[0:5, 0:32, 0:32]
    disc = np.hypot(y - 16, x - 16)
    labels = np.zeros((5, 32, 32), np.uint8)
    labels[0][disc[0] < 5] = 1
    labels[4][disc[0] < 9] = 1
    filled = clinician.contour_interpolation(labels, 2)
    areas = [int(filled[k].sum()) for k in range(5)]
    assert areas[0] == labels[0].sum() and areas[4] == labels[4].sum()  # the user's slices are kept
    assert areas[0] < areas[2] < areas[4]  # slice 2 filled, between the two discs in size
    # the same along I (numpy's last axis): the interpolator follows the IJK axis it is given
    along_i = clinician.contour_interpolation(np.ascontiguousarray(np.moveaxis(labels, 0, 2)), 0)
    assert along_i[:, :, 2].sum() == areas[2]
    # several gaps, two labels, two adjacent labelled slices: every gap filled, labelled slices untouched
    multi = np.zeros((9, 32, 32), np.uint8)
    for k, radius in ((0, 7), (4, 9), (5, 9), (8, 7)):  # rings (label 1) around discs (label 2)
        multi[k][disc[0] < radius] = 1
        multi[k][disc[0] < 3] = 2
    filled = clinician.contour_interpolation(multi, 2)
    assert all(np.array_equal(filled[k], multi[k]) for k in (0, 4, 5, 8))
    assert all((filled[k] == 1).any() and (filled[k] == 2).any() for k in (1, 2, 3, 6, 7))
    # one labelled slice: nothing to interpolate between (Slicer's "Fill between slices" adds nothing)
    single = np.zeros_like(labels)
    single[2] = labels[4]
    assert clinician.contour_interpolation(single, 2)[[0, 1, 3, 4]].sum() == 0


# -- shared pieces --------------------------------------------------------------------------
def test_linear_fit_reports_lines_flat_series_and_too_few_points():
    fit = linear_fit([10, 40, 160], [1 + 2 * 10, 1 + 2 * 40, 1 + 2 * 160])
    assert (
        fit["a"] == pytest.approx(1)
        and fit["b"] == pytest.approx(2)
        and fit["r2"] == pytest.approx(1)
        and fit["verdict"] == "linear"
    )
    assert 1.8 < fit["ratio_per_doubling"] < 2.0 and 0.9 < fit["exponent"] <= 1.0
    assert linear_fit([1, 2, 4], [5.0, 5.01, 5.02])["verdict"] == "flat"
    assert linear_fit([1, 2], [1.0, 3.0])["verdict"] == "too few points to test"
    assert linear_fit([1, 2, 4], [1.0, 9.0, 2.0])["verdict"] == "not linear"


def test_plots_draw_the_best_method_and_dice_against_k(tmp_path):
    rows = [
        {
            "row": r,
            "scores": {"mean": {"dice": d}},
            "curve": [{"iteration": 10, "minutes": 0.5, "dice": d / 2}, {"iteration": 20, "minutes": 1.0, "dice": d}],
        }
        for r, d in (("supervised", 0.4), ("fixmatch", 0.6), ("unimatch", 0.7), ("full", 0.9))
    ]
    assert best_row(rows)["row"] == "unimatch"
    assert plot_learning_curve(rows, tmp_path / "c.png").read_bytes()[:8] == PNG
    recs = [{"row": "interpolation", "k": k, "dice": 0.1 * k + 0.01 * v} for k in (1, 2) for v in (0, 2)]
    table = dice_by_k(recs)
    assert table["interpolation"][2]["mean"] == pytest.approx(0.21) and table["interpolation"][1]["n"] == 2
    assert plot_dice_vs_k(recs, tmp_path / "k.png").read_bytes()[:8] == PNG


def test_clinician_refuses_to_mix_budgets_in_one_results_file(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(
        json.dumps({"dataset": "la", "volume": "x", "k": 1, "row": "supervised", "budget": {"iterations": 1}}) + "\n"
    )
    p = argparse.ArgumentParser()
    clinician.add_arguments(p)
    args = p.parse_args(["--dataset", "la", "--data", str(DATA / "la"), "--out", str(out), "--iterations", "5"])
    with pytest.raises(InputError, match="another budget"):
        clinician.run(args)


# -- smoke runs of the commands ---------------------------------------------------------------
@needs_itk
def test_clinician_benchmark_smoke(tmp_path):
    proc = _bench(
        [
            "clinician",
            "--dataset",
            "la",
            "--data",
            str(DATA / "la"),
            "--volumes",
            "1",
            "--k",
            "1,2",
            "--iterations",
            "2",
            "--size",
            "32",
            "--batch",
            "2",
            "--max-unlabeled",
            "1",
            "--methods",
            "fixmatch",
            "--option",
            "warmup=0.5",
            "--candidates",
            "--out",
            "res.jsonl",
            "--plot",
            "k.png",
        ],
        tmp_path,
    )
    records = read_jsonl(tmp_path / "res.jsonl")
    rows = ("interpolation", "supervised", "completion", "fixmatch", *clinician.CANDIDATES)
    assert {(r["k"], r["row"]) for r in records} == {(k, row) for k in (1, 2) for row in rows}
    for r in records:
        assert {
            "volume",
            "k",
            "kept",
            "hidden_slices",
            "row",
            "dice",
            "hd95_vox",
            "hd95_mm",
            "classes",
            "seconds",
            "budget",
        } <= set(r)
        assert len(r["kept"]) == r["k"] and r["hidden_slices"] == 88 - r["k"] and 0.0 <= r["dice"] <= 1.0
        assert set(r["classes"]) == {"LA"} and r["budget"]["iterations"] == 2 and r["budget"]["size"] == 32
        if r["row"] not in ("interpolation", "completion_pl"):
            assert r["labeled_slices"] == r["k"] and r["train_seconds"] > 0
    fixmatch = [r for r in records if r["row"] == "fixmatch"][-1]
    assert fixmatch["unlabeled_slices"] == 88 - 2 + 88  # the volume's other slices + one other volume
    by = {(r["k"], r["row"]): r for r in records}
    assert by[(2, "completion")]["train_seconds"] == by[(2, "supervised")]["train_seconds"]  # one network, scored twice
    assert by[(2, "completion_pl")]["labeled_slices"] > 2  # trained with the interpolated slices too
    for row in ("completion_25d", "completion_priorin"):  # networks of their own, scored alone and fused
        assert 0.0 <= by[(2, row)]["network_dice"] <= 1.0 and by[(2, row)]["prior"] == by[(2, "completion")]["prior"]
    assert by[(1, "prior")]["dice"] > 0.3  # one slice: the shrinking shape beyond it, no network
    assert set(by[(2, "completion")]["slices"]["by_distance"]) <= {"1", "2-3", "4-7", "8+", "outside"}
    interp = {r["k"]: r["dice"] for r in records if r["row"] == "interpolation"}
    assert interp[1] == 0.0 and interp[2] > 0.3  # one slice: nothing between; two slices: the middle is filled
    assert (tmp_path / "k.png").read_bytes()[:8] == PNG
    assert "budget: 2 iterations, 32x32, batch 2+2" in proc.stdout and "warmup 0.5, rampup 0.3" in proc.stdout
    assert records[0]["budget"]["recipe"] == {
        "warmup": 0.5,
        "rampup": 0.3,
    }  # --option over the recipe, stored with every row
    assert "Dice %" in proc.stdout and "beats interpolation" in proc.stdout
    assert "Spearman" in proc.stdout and proc.stdout.rstrip().splitlines()[-1].split()[0] == "supervised"  # tables last


@needs_itk
def test_clinician_reuse_runs_predicts_the_kept_networks_again(tmp_path):
    def bench(out: str, *extra: str) -> list[dict]:
        _bench(["clinician", "--dataset", "la", "--data", str(DATA / "la"), "--volumes", "1", "--k", "2",
                "--iterations", "3", "--size", "32", "--batch", "2", "--threads", "1", "--methods", "supervised",
                "--out", out, "--runs", "runs", *extra], tmp_path)
        return {r["row"]: r for r in read_jsonl(tmp_path / out)}

    first = bench("a.jsonl")
    marker = next((tmp_path / "runs").rglob("bench_training.json"))
    second = bench("b.jsonl", "--reuse-runs")
    assert "reused" not in first["supervised"] and second["supervised"]["reused"] is True
    assert second["supervised"]["train_seconds"] == first["supervised"]["train_seconds"]  # not trained again
    for row in ("supervised", "completion"):
        assert second[row]["dice"] == first[row]["dice"]  # the same network, scored the same way
    # another budget in the same folder trains again instead of reusing a network it did not train
    third = _bench(["clinician", "--dataset", "la", "--data", str(DATA / "la"), "--volumes", "1", "--k", "2",
                    "--iterations", "2", "--size", "32", "--batch", "2", "--threads", "1", "--methods", "supervised",
                    "--out", "c.jsonl", "--runs", "runs", "--reuse-runs"], tmp_path)
    assert third.returncode == 0 and "reused" not in {r["row"]: r for r in read_jsonl(tmp_path / "c.jsonl")}[
        "supervised"]
    assert json.loads(marker.read_text())["budget"]["iterations"] == 2  # the folder now records the new training
    proc = subprocess.run([sys.executable, "-m", "semiseg", "bench", "clinician", "--reuse-runs", "--out", "d.jsonl"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--reuse-runs needs --runs" in proc.stderr


def test_acdc_protocol_smoke_with_learning_curve(tmp_path):
    proc = _bench(
        [
            "acdc",
            "--data",
            str(DATA / "acdc"),
            "--methods",
            "supervised,fixmatch",
            "--iterations",
            "2",
            "--size",
            "32",
            "--batch",
            "2",
            "--curve-every",
            "1",
            "--max-unlabeled",
            "1",
            "--max-val",
            "1",
            "--out",
            "a.jsonl",
            "--runs",
            "runs",
            "--plot",
            "curve.png",
        ],
        tmp_path,
    )
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert [r["row"] for r in rows] == ["supervised", "fixmatch"]
    for r in rows:
        assert set(r["scores"]["classes"]) == {"RV", "Myo", "LV"} and r["scores"]["volumes"] == 2
        assert {"dice", "jaccard", "hd95_vox", "asd_vox"} <= set(r["scores"]["mean"]) and 0.0 <= r["scores"]["mean"][
            "dice"
        ] <= 1.0
        assert [p["iteration"] for p in r["curve"]] == [1, 2] and r["curve"][-1]["dice"] == round(
            r["scores"]["mean"]["dice"], 4
        )
        assert r["budget"]["iterations"] == 2 and r["options"] == (
            {} if r["row"] == "supervised" else {"warmup": 0.2, "rampup": 0.3}
        )
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG
    _table_is_last(proc.stdout, "mean", "fixmatch")
    # the per-class table: Dice, Jaccard, HD95 and ASD of each class, as stored
    rv = rows[0]["scores"]["classes"]["RV"]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("| supervised |"))
    shown = [
        "-" if v is None or v != v else f"{v * scale:.1f}"
        for v, scale in ((rv["dice"], 100), (rv["jaccard"], 100), (rv["hd95_vox"], 1), (rv["asd_vox"], 1))
    ]  # no distance to an empty mask: "-"
    assert line.split(" | ")[1] == " / ".join(shown)


def test_scaling_benchmark_smoke(tmp_path):
    proc = _bench(
        [
            "scaling",
            "--methods",
            "supervised",
            "--train-sizes",
            "32",
            "--steps",
            "1",
            "--plane",
            "48",
            "--slices",
            "4",
            "--labeled",
            "2",
            "--batch",
            "2",
            "--volume-methods",
            "supervised",
            "--train-volumes",
            "1,2",
            "--volume-size",
            "32",
            "--infer-size",
            "32",
            "--infer-slices",
            "2,4",
            "--infer-volumes",
            "1",
            "--infer-volume-slices",
            "2",
            "--data",
            str(DATA / "acdc"),
            "--usable-methods",
            "supervised",
            "--usable-iterations",
            "2",
            "--usable-every",
            "1",
            "--usable-size",
            "32",
            "--usable-unlabeled",
            "1",
            "--out",
            "s.jsonl",
        ],
        tmp_path,
    )
    recs = read_jsonl(tmp_path / "s.jsonl")
    kinds = [r["kind"] for r in recs]
    assert kinds == ["machine", "baseline", "train", "train", "infer", "infer", "first_usable", "summary"]
    machine, base = recs[0], recs[1]
    assert machine["matmul_peak_gflops"] > 0 and 50 < base["peak_rss_mb"] < 4000 and base["startup_seconds"] > 0
    for r in (r for r in recs if r["kind"] == "train"):
        assert r["seconds_per_iteration"] > 0 and r["images_per_s"] > 0 and r["gflop_per_iteration"] > 0
        # supervised: one trained forward per labelled image = forward + two backward passes (minus the input gradient)
        assert 2.9 < r["forward_equivalents_per_labeled_image"] <= 3.0
        assert 0 < r["flop_utilisation"] < 5 and r["peak_rss_mb"] >= base["peak_rss_mb"] * 0.9
    assert [r["volumes"] for r in recs if r["kind"] == "train"] == [1, 2]
    for r in (r for r in recs if r["kind"] == "infer"):
        assert (
            r["predict_seconds_per_volume"] > 0 and r["end_to_end_seconds_per_volume"] > 0 and r["flop_utilisation"] > 0
        )
    usable = recs[6]
    assert usable["method"] == "supervised" and len(usable["curve"]) == 2 and 0.0 <= usable["final_dice"] <= 1.0
    assert usable["usable_threshold"] >= 0.5 and (usable["time_to_usable_seconds"] is None) == (
        usable["usable_iteration"] is None
    )
    growth = recs[-1]["growth"]
    assert "inference seconds vs slices per volume" in growth and "supervised: s/iteration vs volumes" in growth
    assert all("verdict" in g for g in growth.values())
    _table_is_last(proc.stdout, "verdict", "supervised:")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc (Linux)")
def test_busy_neighbours_use_the_cpu_and_are_gone_after_the_block():
    from semiseg.training.cpu import process_ticks
    from semiseg_bench.contention import busy_neighbours

    with busy_neighbours(2, settle=0.3) as procs:
        time.sleep(0.3)
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        assert all(process_ticks(p.pid) > 5 for p in procs)  # each spun, not slept (clock ticks of 10 ms)
    assert all(p.poll() is not None for p in procs)


def test_each_wait_policy_sets_only_its_own_variable():
    from semiseg_bench.contention import policy_env

    unset = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
    assert policy_env("default") == policy_env("-") == unset  # removes whatever the parent had
    assert policy_env("PASSIVE") == policy_env("passive") == {**unset, "OMP_WAIT_POLICY": "PASSIVE"}
    assert policy_env("spin=30") == {**unset, "GOMP_SPINCOUNT": "30"}
    with pytest.raises(ValueError, match="unknown wait policy 'lazy'"):
        policy_env("lazy")


def test_contention_benchmark_smoke(tmp_path):
    proc = _bench(
        [
            "contention",
            "--size",
            "32",
            "--batch",
            "2",
            "--steps",
            "1",
            "--plane",
            "48",
            "--slices",
            "4",
            "--labeled",
            "2",
            "--busy",
            "0,1",
            "--threads",
            "1,2,0",
            "--policies",
            "spin=7",
            "--out",
            "c.jsonl",
        ],
        tmp_path,
    )
    recs = read_jsonl(tmp_path / "c.jsonl")
    assert [(r["busy"], r["threads"], r["policy"]) for r in recs] == [
        (b, t, p) for b in (0, 1) for t, p in ((1, "-"), (2, "spin=7"), (0, "-"))
    ]
    # each child saw the OpenMP environment of its row
    assert {r["policy"]: r["child_openmp"] for r in recs} == {"-": {}, "spin=7": {"GOMP_SPINCOUNT": "7"}}
    assert all(r["seconds_per_iteration"] > 0 for r in recs)
    assert [r["child_threads"] for r in recs if r["threads"]] == [1, 2, 1, 2]
    assert all(r["child_threads"] >= 1 for r in recs)  # the engine's own choice is recorded
    assert "slowdown against idle" in proc.stdout and "thr]" in proc.stdout.splitlines()[-1]
    _table_is_last(proc.stdout, "engine's choice", "1")
