"""Every script of benchmarks/ stays runnable: each is run as ``python benchmarks/X.py`` at a tiny budget, on
the real data where it needs data, and what it prints or writes is checked.

A new script must get a smoke run here: ``SMOKE`` maps each script to its run, and a test compares its keys with
the files of benchmarks/. The full runs and their budgets are in each script's docstring and docs/BENCHMARKS.md;
the ``semiseg bench`` commands behind several scripts are also tested in test_bench_smoke.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from semiseg_bench.common import default_data_root, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
PNG = b"\x89PNG\r\n\x1a\n"
HAVE_ITK = importlib.util.find_spec("itk") is not None
NO_ITK = "contour interpolation needs the bench extra: pip install itk-morphologicalcontourinterpolation"
NUMBER = r"(-?\d+(?:\.\d+)?)"


def data(name: str) -> Path:
    """The real dataset ``name`` (``la`` or ``acdc``) of ../shared/data; missing data fails, never skips."""
    path = default_data_root() / name
    if not (path / "splits.json").is_file():
        pytest.fail(f"real {name.upper()} data missing at {path}: the tests need ../shared/data beside the checkout")
    return path


def run(script: str, *args: str) -> str:
    """Run ``benchmarks/<script>`` from the repository root on one thread; its stdout (exit code 0 asserted)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"{script}: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def lines_starting(stdout: str, prefix: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(prefix)]


def train_checkpoint(run_dir: Path, size: int) -> Path:
    """A UNet of 4 classes trained (config) at ``size`` px: 3 supervised steps on ACDC's labeled_3 slices."""
    import torch

    from semiseg.training import Trainer
    from semiseg.training.config import TrainConfig
    from semiseg.training.progress import ProgressLog
    from semiseg_bench.acdc import load_acdc

    threads = torch.get_num_threads()  # the trainer sets this process's thread count: given back after
    try:
        train, _ = load_acdc(data("acdc"), "labeled_3", size=size, max_unlabeled=0, max_val=0)
        config = TrainConfig(
            iterations=3,
            size=size,
            batch_labeled=2,
            batch_unlabeled=2,
            device="cpu",
            val_every=0,
            checkpoint_every=1000,
            threads=1,
            precision="fp32",
        )
        Trainer(config, "supervised", {}, 4, run_dir, meta={"axis": 2}, log=ProgressLog(None, stream=None)).fit(train)
    finally:
        torch.set_num_threads(threads)
    assert (run_dir / "checkpoint.pt").is_file()
    return run_dir / "checkpoint.pt"


# -- the smoke run of each script ------------------------------------------------------------------------------------
SMOKE: dict[str, Callable[[Path, pytest.FixtureRequest], None]] = {}


def smoke(script: str, needs_itk: bool = False):
    """Register the smoke run of ``benchmarks/<script>`` (skipped without ITK when its interpolation needs it)."""

    def register(check: Callable[[Path, pytest.FixtureRequest], None]):
        def guarded(tmp_path: Path, request: pytest.FixtureRequest) -> None:
            if needs_itk and not HAVE_ITK:
                pytest.skip(NO_ITK)
            check(tmp_path, request)

        SMOKE[script] = guarded
        return check

    return register


@smoke("acdc_protocol.py")
def _acdc_protocol(tmp: Path, request) -> None:
    out = tmp / "acdc.jsonl"
    stdout = run(
        "acdc_protocol.py", "--data", str(data("acdc")), "--methods", "supervised", "--iterations", "2",
        "--size", "32", "--batch", "2", "--max-unlabeled", "1", "--max-val", "1", "--out", str(out),
        "--plot", str(tmp / "curve.png"),
    )
    (row,) = read_jsonl(out)
    assert row["row"] == "supervised" and row["budget"]["iterations"] == 2
    assert set(row["scores"]["classes"]) == {"RV", "Myo", "LV"} and row["scores"]["volumes"] == 2  # ED and ES
    assert 0.0 <= row["scores"]["mean"]["dice"] <= 1.0
    assert (tmp / "curve.png").read_bytes()[:8] == PNG
    assert stdout.rstrip().splitlines()[-1].split()[0] == "supervised"  # the summary table last


@smoke("against_baseline.py")
def _against_baseline(tmp: Path, request) -> None:
    base = tmp / "base"
    shutil.copytree(ROOT / "Logic" / "semiseg", base / "semiseg_base", ignore=shutil.ignore_patterns("__pycache__"))
    checkpoint = request.getfixturevalue("checkpoint_256")
    stdout = run("against_baseline.py", "1", "1", str(base), str(checkpoint), "--size", "32", "--batch", "2",
                 "--slices", "2")
    steps = {m[1]: float(m[2]) for m in re.finditer(rf"unimatch 32 px (.+): median {NUMBER} s/it over 1 steps", stdout)}
    assert set(steps) == {"today fp32", "new fp32", "new bf16"} and all(v > 0 for v in steps.values()), stdout
    infer = {m[1]: float(m[2]) for m in re.finditer(rf"inference 2 slices at 256 px (.+): median {NUMBER} s", stdout)}
    assert set(infer) == {"today fp32", "new fp32", "new bf16"} and all(v > 0 for v in infer.values()), stdout
    assert "today fp32: median" in lines_starting(stdout, "inference")[0] and "today/this = 1.00x" in stdout


@smoke("clinician.py", needs_itk=True)
def _clinician(tmp: Path, request) -> None:
    out = tmp / "clinician.jsonl"
    stdout = run(
        "clinician.py", "--dataset", "la", "--data", str(data("la")), "--volumes", "1", "--k", "2",
        "--iterations", "2", "--size", "32", "--batch", "2", "--max-unlabeled", "0", "--methods", "supervised",
        "--out", str(out), "--plot", str(tmp / "k.png"),
    )
    records = read_jsonl(out)
    assert [r["row"] for r in records] == ["interpolation", "supervised", "completion"]
    for r in records:
        assert r["k"] == 2 and len(r["kept"]) == 2 and r["hidden_slices"] == 88 - 2 and 0.0 <= r["dice"] <= 1.0
    assert records[0]["dice"] > 0.3  # two labelled slices: the atrium between them is filled in
    assert (tmp / "k.png").read_bytes()[:8] == PNG
    assert "hidden-slice scores (LA" in stdout and stdout.rstrip().splitlines()[-1].split()[0] == "supervised"


@smoke("contention.py")
def _contention(tmp: Path, request) -> None:
    out = tmp / "contention.jsonl"
    stdout = run(
        "contention.py", "--size", "32", "--batch", "2", "--steps", "1", "--plane", "48", "--slices", "4",
        "--labeled", "2", "--busy", "0", "--threads", "1", "--out", str(out),
    )
    (r,) = read_jsonl(out)
    assert (r["busy"], r["threads"], r["child_threads"]) == (0, 1, 1) and r["seconds_per_iteration"] > 0
    last = stdout.rstrip().splitlines()[-1].split()
    assert last[:2] == ["0", "busy"] and float(last[2]) == pytest.approx(r["seconds_per_iteration"], abs=1e-3)


@smoke("first_preview.py")
def _first_preview(tmp: Path, request) -> None:
    stdout = run("first_preview.py", "--data", str(data("la")), "--k", "2", "--iterations", "4", "--size", "32")
    assert re.search(r"LA volume \w+, k = 2, method supervised, recipe quick, 1 thread\(s\), exit code 0", stdout)
    seconds = {m[1]: float(m[2]) for m in re.finditer(rf"^  (\w+) +{NUMBER} s$", stdout, re.M)}
    assert {"preview", "done", "exit"} <= set(seconds), stdout
    assert 0 < seconds["preview"] <= seconds["done"] <= seconds["exit"]
    dice = float(re.search(rf"Dice on the hidden slices: {NUMBER} %", stdout)[1])
    assert 0.0 <= dice <= 100.0


@smoke("fusion_settings.py", needs_itk=True)
def _fusion_settings(tmp: Path, request) -> None:
    runs = tmp / "runs"
    run("clinician.py", "--dataset", "la", "--data", str(data("la")), "--volumes", "1", "--k", "2,3", "--iterations",
        "2", "--size", "32", "--batch", "2", "--threads", "1", "--methods", "supervised", "--out", str(tmp / "c.jsonl"),
        "--runs", str(runs))
    completion = {r["k"]: 100 * r["dice"] for r in read_jsonl(tmp / "c.jsonl") if r["row"] == "completion"}
    stdout = run("fusion_settings.py", "--dataset", "la", "--data", str(data("la")), "--runs", str(runs), "--k", "2,3",
                 "--temperatures", "0.25,1", "--sharpen", "0.5", "--ends", "both")
    means = lines_starting(stdout, "T ")[:8]
    rows = {line.split(" ends")[0]: [float(v) for v in line.split(" ends")[1].split()[:2]] for line in means}
    assert list(rows) == [f"T {t}, sharpen 0.5, {c}, {e}" for t in ("0.25", "1") for c in ("carried", "still")
                          for e in ("class", "volume")], stdout
    # the engine's own settings re-score the network the benchmark trained exactly as the benchmark scored it
    assert rows["T 0.25, sharpen 0.5, carried, class"] == pytest.approx([completion[2], completion[3]], abs=0.01)
    # one class: a labelled slice that lacks it holds no class, so the two endings are the same rule
    assert rows["T 1, sharpen 0.5, still, class"] == rows["T 1, sharpen 0.5, still, volume"], stdout
    assert "+0.00 (0/1, 0 worse)" in stdout  # the first setting against itself


@smoke("islands.py")
def _islands(tmp: Path, request) -> None:
    stdout = run("islands.py", "--dataset", "la", "--data", str(data("la")), "--k", "2", "--study", "4")
    assert stdout.startswith("la: 16 expert label maps"), stdout
    row = lines_starting(stdout, "| 1 |")[0]
    holding, apart, smallest = re.match(rf"\| 1 \| (\d+) \| (\d+) \| {NUMBER} %", row).groups()  # type: ignore[union-attr]
    assert int(holding) == 16 and 0 <= int(apart) <= 16 and 50.0 <= float(smallest) <= 100.0, stdout
    assert lines_starting(stdout, "| 2 |") == ["| 2 | 4 of 4 / 16 of 16 |"], stdout  # the atrium: one piece


@smoke("review_order.py")
def _review_order(tmp: Path, request) -> None:
    args = ["--dataset", "acdc", "--data", str(data("acdc")), "--scans", "1", "--k", "2", "--unlabeled", "1",
            "--iterations", "3", "--size", "32", "--batch", "2", "--method", "supervised", "--corrections", "2",
            "--orders", "confidence,gain:0,gain:0.1,random", "--draws", "2", "--checkpoint", str(tmp / "first.pt")]
    stdout = run("review_order.py", *args)
    assert stdout.startswith("acdc: study Dice (%) by corrected slices"), stdout
    rows = {line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:-1]] for line in
            lines_starting(stdout, "| ") if not line.startswith("| order")}
    assert list(rows) == ["confidence", "gain:0", "gain:0.1", "random"], stdout
    assert all(len(r) == 3 and r[0] == rows["random"][0] and 0 < min(r) <= max(r) <= 100 for r in rows.values())
    assert (tmp / "first.pt").is_file()  # the first network, kept for the next run


@smoke("interpolation.py", needs_itk=True)
def _interpolation(tmp: Path, request) -> None:
    stdout = run("interpolation.py", "--dataset", "la", "--data", str(data("la")), "--volumes", "1", "--k", "2",
                 "--demons-iterations", "5")
    assert stdout.startswith("LA: Dice % on the hidden slices")
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in stdout.splitlines()[3:]}
    assert set(rows) == {"itk", "morphological", "shape", "registration"}, stdout
    for dice, seconds in rows.values():
        assert 30.0 < dice <= 100.0 and seconds >= 0  # two labelled slices: the atrium between them is filled in


@smoke("train_distributed.py")
def _train_distributed(tmp: Path, request) -> None:
    stdout = run("train_distributed.py", "--data", str(data("la")), "--iterations", "3", "--warmup", "1",
                 "--size", "32", "--batch", "2", "--precision", "fp32")
    rows = {line[:34].strip(): line[34:].split() for line in stdout.splitlines()[2:]}
    assert list(rows) == ["1 process", "2 processes, same global batch", "2 processes, batch per rank"], stdout
    assert [int(r[0]) for r in rows.values()] == [4, 4, 8]  # global batches: labelled plus unlabelled slices
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows.values()) and rows["1 process"][4] == "100%"


@smoke("per_change.py")
def _per_change(tmp: Path, request) -> None:
    stdout = run("per_change.py", "--size", "32", "--batch", "2", "--steps", "1", "--blocks", "1")
    assert "unimatch at 32 px, batch 2 + 2, 1 thread" in stdout
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines_starting(stdout, "| ")[1:]}  # under the header
    assert {"all changes", "no channels-last", "no prefetch", "replicate pad", "mmap every block"} <= set(rows)
    assert re.fullmatch(rf"\| all changes \| {NUMBER} \| 1.00x \| \|", rows["all changes"])
    for name, line in rows.items():
        seconds = float(line.split(" | ")[1])
        assert seconds > 0 and (name == "all changes" or re.search(r"\| \d+\.\d\dx \| [+-]\d\.\d{3} s/it \|", line))


@smoke("predict_many.py")
def _predict_many(tmp: Path, request) -> None:
    stdout = run("predict_many.py", "--data", str(data("la")), "--volumes", "3", "--subset", "2", "--size", "32")
    assert stdout.startswith("3 LA volumes (16 scans repeated, 88 slices each)")
    rows = {line[:46].strip(): [float(v) for v in line[46:].split()] for line in stdout.splitlines()[2:6]}
    assert [v[0] for v in rows.values()] == [2, 2, 3, 3], stdout
    assert all(seconds > 0 and per_s > 0 and per_volume > 0 for _, seconds, per_s, per_volume in rows.values())
    assert re.search(r"^100 volumes: --images \d+ s \(target 180 s: (met|missed)\)", stdout, re.M), stdout
    assert "identical files: 16 of 16 (the first 2 volume(s)" in stdout  # 4 files of 2 volumes, against 2 paths


@smoke("predict_sharded.py")
def _predict_sharded(tmp: Path, request) -> None:
    stdout = run("predict_sharded.py", "--data", str(data("la")), "--volumes", "3", "--processes", "2", "--size", "32")
    assert stdout.startswith("3 LA volumes (264 slices), 1 torch thread(s) per process")
    rows = [line.split() for line in stdout.splitlines()[2:4]]
    assert [r[0] for r in rows] == ["1", "2"], stdout
    assert all(float(v) > 0 for r in rows for v in r[1:5]) and rows[0][5] == "100%", stdout
    assert "identical files: 12 of 12 (1 process against 2)" in stdout  # 4 files of 3 volumes


@smoke("refguided_labels.py")
def _refguided_labels(tmp: Path, request) -> None:
    checkpoint = request.getfixturevalue("checkpoint_32")
    stdout = run("refguided_labels.py", str(checkpoint), "--data", str(data("acdc")), "--patients", "1")
    head = re.search(r"(\d+) reference slices, (\d+) query slices, 32x32, stride 4", stdout)
    assert head and int(head[1]) > 0 and int(head[2]) > 0, stdout
    assert "Dice against the expert labels (RV/Myo/LV): reference labels [" in stdout
    rules = {line.split(" | ")[0].lstrip("| "): line for line in lines_starting(stdout, "| ")[1:]}  # under the header
    assert set(rules) == {
        "alone, margin >= 0.05", "alone, margin >= 0.02", "agree", "agree, confidence >= 0.95",
        "network, confidence >= 0.95",
    }
    for line in rules.values():
        kept = float(re.search(rf"^\| .+? \| {NUMBER}% \|", line)[1])
        assert 0.0 <= kept <= 100.0 and len(re.findall(r"\d+ / (?:\d+%|nan%) / \d+%", line)) == 3, line


@smoke("scaling.py")
def _scaling(tmp: Path, request) -> None:
    out = tmp / "scaling.jsonl"
    stdout = run(
        "scaling.py", "--methods", "supervised", "--train-sizes", "32", "--steps", "1", "--plane", "48",
        "--slices", "4", "--labeled", "2", "--batch", "2", "--volume-methods", "", "--infer-size", "32",
        "--infer-slices", "2", "--infer-volumes", "1", "--infer-volume-slices", "2", "--data", str(data("acdc")),
        "--usable-methods", "", "--out", str(out),
    )
    recs = read_jsonl(out)
    assert [r["kind"] for r in recs] == ["machine", "baseline", "train", "infer", "summary"]
    train, infer = recs[2], recs[3]
    assert train["method"] == "supervised" and train["size"] == 32 and train["seconds_per_iteration"] > 0
    assert infer["slices"] == 2 and infer["predict_seconds_per_volume"] > 0
    assert lines_starting(stdout, "supervised")[-1].split()[:3] == ["supervised", "32", "1"]


@smoke("throughput.py")
def _throughput(tmp: Path, request) -> None:
    stdout = run("throughput.py", "--method", "supervised", "--size", "32", "--batch", "2", "--steps", "1",
                 "--blocks", "1", "--slices", "2")
    record = json.loads(stdout.splitlines()[0])
    assert (record["method"], record["size"], record["batch"], record["threads"]) == ("supervised", 32, 2, 1)
    assert record["train_seconds_per_step_fp32"] > 0 and record["train_seconds_per_step_bf16"] > 0
    assert record["inference_slices_per_s_fp32"] > 0 and record["inference_slices_per_s_bf16"] > 0
    shown = float(lines_starting(stdout, "train_seconds_per_step_fp32 ")[0].split()[1])
    assert shown == pytest.approx(record["train_seconds_per_step_fp32"], rel=0.01)  # the table repeats the record


# -- the tests -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_256(tmp_path_factory) -> Path:
    """against_baseline.py's Predictor computes at 256 px: a checkpoint trained (config) at 256."""
    return train_checkpoint(tmp_path_factory.mktemp("run256"), 256)


@pytest.fixture(scope="module")
def checkpoint_32(tmp_path_factory) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("run32"), 32)


def test_every_benchmark_script_has_a_smoke_run():
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    assert scripts, f"no scripts in {BENCHMARKS}"
    assert set(SMOKE) == scripts, (
        f"scripts without a smoke run here: {sorted(scripts - set(SMOKE))}; "
        f"smoke runs of missing scripts: {sorted(set(SMOKE) - scripts)}"
    )


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_script_runs(script, tmp_path, request):
    SMOKE[script](tmp_path, request)
