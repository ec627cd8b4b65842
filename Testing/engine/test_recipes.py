"""Recipes fill in what a job leaves out: ours on a CPU, the papers' elsewhere; the job's own values win."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from semiseg.errors import InputError
from semiseg.job import load_job, prepare, setup_report
from semiseg.training.recipes import (
    CPU_TRAIN,
    QUICK_TRAIN,
    SHORT_BUDGET,
    SHORT_RUN,
    WARM_START,
    apply_recipe,
    resolve_recipe,
)

from enginetesting import write_job


def test_cpu_recipe_fills_training_settings_and_semi_supervised_options():
    name, train, options = apply_recipe("cpu", "unimatch", {"device": "cpu"}, {})
    assert name == "cpu" and train == {**CPU_TRAIN, "device": "cpu"} and options == SHORT_BUDGET
    # supervised has no warm-up or ramp-up: it gets the training settings only
    assert apply_recipe("cpu", "supervised", {}, {})[2] == {}


def test_quick_recipe_is_the_cpu_recipe_at_a_smaller_budget():
    name, train, options = apply_recipe("quick", "unimatch", {}, {})
    assert name == "quick" and train == QUICK_TRAIN and (train["iterations"], train["size"]) == (600, 96)
    assert {k: v for k, v in train.items() if k not in ("iterations", "size")} == {k: v for k, v in CPU_TRAIN.items()
                                                                                 if k not in ("iterations", "size")}
    assert options == SHORT_BUDGET  # 600 iterations: the full warm-up schedule
    assert (
        apply_recipe("quick", "supervised", {"iterations": 50}, {})[1]["iterations"] == 50
    )  # the job's own value wins


def test_short_runs_warm_up_for_longer():
    assert apply_recipe("cpu", "unimatch", {"iterations": 499}, {})[2] == SHORT_RUN == {"warmup": 0.5, "rampup": 0.2}
    assert apply_recipe("cpu", "unimatch", {"iterations": 500}, {})[2] == SHORT_BUDGET


def test_a_warm_started_run_neither_warms_up_nor_ramps_up(toy_case, tmp_path):
    for iterations in (200, 1000):
        assert apply_recipe("cpu", "unimatch", {"iterations": iterations}, {}, warm_start=True)[2] == WARM_START
    assert WARM_START == {"warmup": 0.0, "rampup": 0.0}
    assert apply_recipe("cpu", "unimatch", {}, {"warmup": 0.1}, warm_start=True)[2] == {"warmup": 0.1, "rampup": 0.0}
    assert apply_recipe("cpu", "supervised", {}, {}, warm_start=True)[2] == {}
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"")  # the job's check only needs the file to exist; prepare is not run here
    job = load_job(write_job(toy_case["dir"], method="unimatch", train={"device": "cpu"}))
    assert job.settings[2] == SHORT_BUDGET
    assert dataclasses.replace(job, init_checkpoint=str(checkpoint)).settings[2] == WARM_START  # a retrain


def test_the_jobs_own_values_win_over_the_recipe():
    _, train, options = apply_recipe("cpu", "fixmatch", {"size": 256, "iterations": 600}, {"warmup": 0.0, "tau": 0.9})
    assert (train["size"], train["iterations"], train["lr"]) == (256, 600, CPU_TRAIN["lr"])
    assert options == {"warmup": 0.0, "rampup": SHORT_BUDGET["rampup"], "tau": 0.9}


def test_paper_recipe_adds_nothing():
    assert apply_recipe("paper", "unimatch", {"size": 64}, {"tau": 0.9}) == ("paper", {"size": 64}, {"tau": 0.9})


def test_auto_follows_the_device():
    assert resolve_recipe("auto", "cpu") == "cpu"
    assert resolve_recipe("auto", "cuda") == "paper" and resolve_recipe("auto", "mps") == "paper"
    assert resolve_recipe("auto", "auto") == ("paper" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="recipe must be one of"):
        resolve_recipe("fast")


def test_a_job_with_an_unknown_recipe_is_refused_naming_the_file(toy_case):
    job_dir = write_job(toy_case["dir"], recipe="fast")
    with pytest.raises(InputError) as err:
        load_job(job_dir)
    assert "recipe" in str(err.value) and "job.json" in str(err.value)


def test_prepare_resolves_the_recipe_of_a_job(toy_case):
    job = load_job(write_job(toy_case["dir"], method="fixmatch", train={"device": "cpu", "iterations": 3}))
    prepared = prepare(job)
    assert prepared.recipe == "cpu"
    assert (prepared.config.size, prepared.config.batch_labeled, prepared.config.iterations) == (
        CPU_TRAIN["size"],
        CPU_TRAIN["batch_labeled"],
        3,
    )
    assert prepared.method_options == SHORT_RUN  # 3 iterations: a short run
    paper = prepare(dataclasses.replace(job, recipe="paper"))
    assert paper.config.size == 256 and paper.method_options == {}


def test_setup_report_warns_when_auto_finds_no_gpu(toy_case):
    job = load_job(write_job(toy_case["dir"], method="unimatch", train={"device": "auto", "iterations": 3}))
    report = setup_report(prepare(job))
    if torch.cuda.is_available():
        assert report["device"] == "cuda" and report["recipe"] == "paper" and "warning" not in report
    else:
        assert report["device"] == "cpu" and report["recipe"] == "cpu"
        assert report["warning"].startswith("No GPU found") and "128x128" in report["warning"]
    explicit = load_job(write_job(toy_case["dir"], train={"device": "cpu", "iterations": 3}))
    assert "warning" not in setup_report(prepare(explicit))
