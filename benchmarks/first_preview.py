"""Seconds from Train to the first preview and to the final result, for one LA volume on one core.

Writes a job folder for an LA volume with k labelled slices (the clinician benchmark's choice of
slices), runs ``semiseg train --job`` as a front end does (a new process, the ``quick`` recipe by
default, the default method and completion), and prints the wall-clock seconds from the start of the
process to its first ``preview`` line, to its ``done`` line and to its exit, with the Dice of the
final result on the hidden slices. Run it on an idle machine:

    OMP_NUM_THREADS=1 python benchmarks/first_preview.py --k 3 --method supervised --recipe quick

``--iterations`` and ``--size`` override the recipe's (a quick check of the script, not the measurement).
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

import SimpleITK as sitk

from semiseg.io.slices import labeled_slice_indices
from semiseg_bench.clinician import keep_slices, list_dataset, score_hidden, sparsify
from semiseg_bench.common import default_data_root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the LA folder (default: ../shared/data/la)")
    p.add_argument("--volume", type=int, default=0, help="index of the volume in splits.json")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--method", default="supervised")
    p.add_argument("--recipe", default="quick")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iterations", type=int, help="training iterations (default: the recipe's)")
    p.add_argument("--size", type=int, help="training size in pixels (default: the recipe's)")
    args = p.parse_args()
    root = Path(args.data) if args.data else default_data_root() / "la"
    name = list_dataset(root, "la")[0][args.volume]
    reference = sitk.ReadImage(str(root / "labels" / f"{name}.nii.gz"))
    labels = sitk.GetArrayFromImage(reference)
    kept = keep_slices(labeled_slice_indices(labels, 2), args.k)
    with tempfile.TemporaryDirectory(prefix="semiseg-first-preview-") as folder:
        job_dir = Path(folder)
        sparse = sitk.GetImageFromArray(sparsify(labels, 2, kept))
        sparse.CopyInformation(reference)
        sitk.WriteImage(sparse, str(job_dir / "labels.nii.gz"))
        train = {"threads": args.threads}
        train.update({key: getattr(args, key) for key in ("iterations", "size") if getattr(args, key) is not None})
        job = {"format_version": 1, "image": str(root / "images" / f"{name}.nii.gz"), "labels": "labels.nii.gz",
               "method": args.method, "recipe": args.recipe, "train": train}
        (job_dir / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        start = time.perf_counter()
        command = [sys.executable, "-m", "semiseg", "train", "--job", str(job_dir)]
        errors = (job_dir / "stderr.txt").open("w")  # shown if the engine fails
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        seconds: dict[str, float] = {}
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("{"):
                event = json.loads(line)["event"]
                seconds.setdefault(event, time.perf_counter() - start)
        proc.wait()
        seconds["exit"] = time.perf_counter() - start
        errors.close()
        if proc.returncode != 0:
            tail = (job_dir / "stderr.txt").read_text()[-3000:]
            raise SystemExit(f"{tail}\nsemiseg train --job failed with exit code {proc.returncode}")
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(job_dir / "run" / "predictions" / name / "labels.nii.gz")))
        dice = score_hidden(pred, labels, kept, 2, 2, reference.GetSpacing()[::-1], ["background", "LA"])["dice"]
    print(f"LA volume {name}, k = {args.k}, method {args.method}, recipe {args.recipe}, {args.threads} thread(s), "
          f"exit code {proc.returncode}")
    for event in ("setup", "preview", "start", "trained", "done", "exit"):
        if event in seconds:
            print(f"  {event:8s} {seconds[event]:7.1f} s")
    print(f"  Dice on the hidden slices: {100 * dice:.1f} %")


if __name__ == "__main__":
    main()
