"""Prediction of many volumes: ``semiseg predict --images`` against one volume at a time (issue 12, item 2).

Makes ``--volumes`` LA-size volumes: the real LA scans (88 slices of 135-159 x 171-232 pixels) linked
into a temporary folder again and again under new names, so each is read from disk as a user's would
be. Predicts them all with one ``semiseg predict --images`` process, and the first ``--subset`` of them
one at a time in two ways: today's ``semiseg predict --image`` (a process, a model load each) and, in
this process, one model load then :func:`semiseg.inference.write_prediction` volume after volume (no
overlap of reading, computing and writing). Prints seconds, volumes/s and s/volume of each, checks
that the subset's files are byte-identical in all three (exit code 1 when not), and the issue's target
(100 LA volumes in at most 3 minutes on the 2-core machine). Without ``--checkpoint`` it trains a tiny
one (2 supervised steps at ``--size`` px on one LA volume: the speed of a prediction does not depend on
the weights), which keeps the atrium to its largest island as a job's run on LA does. The full run, on an
otherwise idle machine:

    python benchmarks/predict_many.py --volumes 100 --subset 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from semiseg.inference import Predictor, write_prediction
from semiseg.io.images import volume_name
from semiseg_bench.common import default_data_root

TARGET_VOLUMES, TARGET_SECONDS = 100, 180.0


def la_scans(data: str | None) -> list[Path]:
    """The LA scans of ``data`` (default: ../shared/data/la)."""
    la = Path(data) if data else default_data_root() / "la"
    scans = sorted((la / "images").glob("*.nii.gz"))
    if not scans:
        raise SystemExit(f"no LA volumes in {la / 'images'}")
    return scans


def link_volumes(scans: list[Path], folder: Path, count: int) -> Path:
    """``count`` volumes in ``folder`` (made): links to ``scans`` in turn, under new names (links, not copies:
    every volume is still read from disk)."""
    folder.mkdir()
    for i in range(count):
        (folder / f"v{i:04d}_{scans[i % len(scans)].name}").symlink_to(scans[i % len(scans)])
    return folder


def train_checkpoint(la: Path, run_dir: Path, size: int) -> Path:
    """2 supervised steps at ``size`` px on the first LA volume's slices, as the engine's own Trainer runs them."""
    from semiseg.io.slices import build_slice_sets, load_volume
    from semiseg.training import Trainer
    from semiseg.training.config import TrainConfig
    from semiseg.training.progress import ProgressLog
    from semiseg.training.trainer import TrainData

    image = sorted((la / "images").glob("*.nii.gz"))[0]
    volume = load_volume(image, la / "labels" / image.name, 2)
    train, val, unlabeled = build_slice_sets([volume], [], axis=2, size=size, min_val_slices=10**9)
    config = TrainConfig(iterations=2, size=size, batch_labeled=2, batch_unlabeled=2, device="cpu", val_every=0,
                         checkpoint_every=1000, threads=1, precision="fp32")
    threads = torch.get_num_threads()
    meta = {"axis": 2, "keep_largest_island": [1]}  # as a job's run on LA decides ("auto"): the atrium is one piece
    Trainer(config, "supervised", {}, 2, run_dir, meta=meta, log=ProgressLog(None, stream=None)).fit(
        TrainData(train, val, unlabeled, 2)
    )
    torch.set_num_threads(threads)  # the trainer sets this process's count
    return run_dir / "checkpoint.pt"


def semiseg(*args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "semiseg", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{proc.stderr[-3000:]}\nsemiseg {args[0]} failed with exit code {proc.returncode}")
    return proc


def same_files(a: Path, b: Path) -> tuple[int, list[str]]:
    """How many files of ``a`` are byte-identical in ``b``, and the names that differ or are missing."""
    names = sorted(p.name for p in a.iterdir()) if a.is_dir() else []
    differ = [n for n in names if not (b / n).is_file() or (a / n).read_bytes() != (b / n).read_bytes()]
    differ += sorted(p.name for p in b.iterdir() if not (a / p.name).exists()) if b.is_dir() else ["(folder)"]
    return len(names) - len(differ), differ


def row(path: str, volumes: int, seconds: float) -> str:
    return f"{path:<46} {volumes:>7} {seconds:>9.1f} {volumes / seconds:>10.2f} {seconds / volumes:>9.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the LA folder (default: ../shared/data/la)")
    p.add_argument("--volumes", type=int, default=100, help="volumes predicted by semiseg predict --images")
    p.add_argument("--subset", type=int, default=5, help="the first volumes, also predicted one at a time")
    p.add_argument("--checkpoint", help="a run's checkpoint.pt (default: a tiny one trained here at --size px)")
    p.add_argument("--size", type=int, default=128, help="training size of the tiny checkpoint (the recipe's: 128)")
    args = p.parse_args()
    scans = la_scans(args.data)
    la = scans[0].parent.parent
    subset = min(args.subset, args.volumes)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="semiseg-predict-many-") as folder:
        tmp = Path(folder)
        checkpoint = Path(args.checkpoint) if args.checkpoint else train_checkpoint(la, tmp / "run", args.size)
        inputs = link_volumes(scans, tmp / "in", args.volumes)
        images = sorted(inputs.iterdir())
        predictor = Predictor(checkpoint, "cpu")

        start = time.perf_counter()
        proc = semiseg("predict", "--run", checkpoint, "--images", inputs, "--out", tmp / "many")
        many_seconds = time.perf_counter() - start
        done = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"event": "done"')][0]

        start = time.perf_counter()
        for image in images[:subset]:
            semiseg("predict", "--run", checkpoint, "--image", image, "--out", tmp / "one" / volume_name(image))
        one_seconds = time.perf_counter() - start

        start = time.perf_counter()
        for image in images[:subset]:
            write_prediction(predictor, image, tmp / "loop" / volume_name(image))
        loop_seconds = time.perf_counter() - start

        checked, differ = 0, []
        for image in images[:subset]:
            name = volume_name(image)
            for other in ("one", "loop"):
                same, bad = same_files(tmp / "many" / name, tmp / other / name)
                checked += same
                differ += [f"{name}/{n} ({other})" for n in bad]

    print(f"{args.volumes} LA volumes ({len(scans)} scans repeated, 88 slices each), checkpoint {checkpoint.name} "
          f"trained at {predictor.size} px, {predictor.precision}; load average before {load_before[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'path':<46} {'volumes':>7} {'seconds':>9} {'volumes/s':>10} {'s/volume':>9}")
    print(row("semiseg predict --image, a process each", subset, one_seconds))
    print(row(f"one model load, one after another ({torch.get_num_threads()} thr.)", subset, loop_seconds))
    print(row("semiseg predict --images (whole process)", args.volumes, many_seconds))
    print(row(f"  of which predicting ({done['threads']} torch thread(s))", args.volumes, done["seconds"]))
    # the process's start (imports, model load) once, then the volumes at the rate measured
    projected = many_seconds - done["seconds"] + done["seconds"] / args.volumes * TARGET_VOLUMES
    print(f"{TARGET_VOLUMES} volumes: --images {projected:.0f} s (target {TARGET_SECONDS:.0f} s: "
          f"{'met' if projected <= TARGET_SECONDS else 'missed'}), one process each "
          f"{one_seconds / subset * TARGET_VOLUMES:.0f} s, one model load without overlap "
          f"{loop_seconds / subset * TARGET_VOLUMES:.0f} s")
    print(f"identical files: {checked} of {checked + len(differ)} (the first {subset} volume(s), --images against "
          "each of the two others)")
    if differ:
        raise SystemExit(f"outputs differ: {', '.join(differ)}")


if __name__ == "__main__":
    main()
