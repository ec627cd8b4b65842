"""The README's main job (semiseg demo) and the throughput benchmark run end to end (tiny budgets)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from semiseg.models import UNet2D
from semiseg_bench.flops import forward_flops


def test_demo_runs_on_the_installed_sample(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "semiseg", "demo", "--out", str(out), "--iterations", "20"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["event"] == "demo" and 0.0 <= last["mean_dice_hidden_slices"] <= 1.0
    report = json.loads((out / "evaluation.json").read_text())
    assert len(report["labeled_slices"]) == 3 and report["hidden_slices"] > 20
    assert set(report["hidden_slice_scores"]["classes"]) == {"grey matter", "white matter"}
    png = (out / "montage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    image = sitk.ReadImage(str(out / "job" / "image.nii.gz"))
    labels = sitk.ReadImage(str(out / "run" / "predictions" / "image" / "labels.nii.gz"))
    assert labels.GetSize() == image.GetSize() and labels.GetSpacing() == image.GetSpacing()


def test_forward_flops_counts_convolutions_exactly():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert forward_flops(conv, torch.zeros(2, 3, 10, 10)) == 2 * 3 * 8 * 9 * 100 * 2
    up = torch.nn.ConvTranspose2d(4, 2, 2, stride=2)
    assert forward_flops(up, torch.zeros(1, 4, 5, 5)) == 2 * 4 * 2 * 4 * 25
    # the papers' UNet at 256x256 is about 6 GFLOP per image (3 GMAC)
    assert 5.0e9 < forward_flops(UNet2D(1, 4).eval(), torch.zeros(1, 1, 256, 256)) < 7.0e9


def test_throughput_benchmark_smoke():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "semiseg",
            "bench",
            "throughput",
            "--size",
            "32",
            "--batch",
            "2",
            "--steps",
            "1",
            "--slices",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[0])
    assert (
        result["train_images_per_s"] > 0 and result["inference_slices_per_s"] > 0 and result["matmul_peak_gflops"] > 0
    )
    assert proc.stdout.strip().splitlines()[-1].startswith("inference_flop_utilisation")


@pytest.mark.parametrize("n, k", [(3, 2), (6, 5), (10, 3), (40, 1), (4, 4), (2, 5)])
def test_demo_keeps_k_distinct_evenly_spread_slices(n, k):
    from semiseg.demo import evenly_spread

    picked = evenly_spread(np.arange(100, 100 + n), k)
    assert len(picked) == min(k, n) == len(set(picked)) and picked == sorted(picked)
    assert all(100 <= p < 100 + n for p in picked)
