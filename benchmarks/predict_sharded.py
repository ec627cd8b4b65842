"""Prediction of many volumes under torchrun: 1 process against N (issue 15, item 2; docs/SCALE.md).

Links ``--volumes`` LA scans (88 slices each) under new names into a temporary folder and predicts them
twice at ``--threads`` torch thread(s) per process: with one ``semiseg predict --images`` process, then
with ``torchrun --standalone --nproc-per-node N -m semiseg -- predict --images`` (the volumes shared
out over the ranks). Prints for each the seconds of the whole command (start, imports, model load
included) and of the prediction alone (the slowest rank's ``done``), the volumes/s and images
(2D slices)/s of the prediction, and the scaling efficiency (the rate of N processes over N times
the rate of one); checks that both wrote byte-identical files (exit code 1 when not). Without
``--checkpoint`` it trains a tiny one (as benchmarks/predict_many.py). The full run:

    python benchmarks/predict_sharded.py --volumes 40 --processes 2 --threads 1
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

from predict_many import la_scans, link_volumes, same_files, train_checkpoint


def timed(command: list[str], threads: int) -> tuple[float, list[dict]]:
    """Seconds of ``command`` and its JSON progress lines (exit code 0 required)."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{proc.stderr[-3000:]}\n{' '.join(command[:8])} ... failed with exit code {proc.returncode}")
    return seconds, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the LA folder (default: ../shared/data/la)")
    p.add_argument("--volumes", type=int, default=40, help="volumes predicted")
    p.add_argument("--processes", type=int, default=2, help="torchrun's --nproc-per-node")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (OMP_NUM_THREADS)")
    p.add_argument("--checkpoint", help="a run's checkpoint.pt (default: a tiny one trained here at --size px)")
    p.add_argument("--size", type=int, default=128, help="training size of the tiny checkpoint (the recipe's: 128)")
    args = p.parse_args()
    scans = la_scans(args.data)
    la = scans[0].parent.parent
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="semiseg-predict-sharded-") as folder:
        tmp = Path(folder)
        checkpoint = Path(args.checkpoint) if args.checkpoint else train_checkpoint(la, tmp / "run", args.size)
        inputs = link_volumes(scans, tmp / "in", args.volumes)
        predict = ["predict", "--run", str(checkpoint), "--images", str(inputs), "--out"]
        runs = {}
        runs[1] = timed([sys.executable, "-m", "semiseg", *predict, str(tmp / "one")], args.threads)
        runs[args.processes] = timed(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.processes),
             "-m", "semiseg", "--", *predict, str(tmp / "many")], args.threads)
        checked, differ = 0, []
        for image in sorted(inputs.iterdir()):
            name = image.name[: -len(".nii.gz")]
            same, bad = same_files(tmp / "one" / name, tmp / "many" / name)
            checked += same
            differ += [f"{name}/{n}" for n in bad]
    images = 88 * args.volumes
    print(f"{args.volumes} LA volumes ({images} slices), {args.threads} torch thread(s) per process, "
          f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'processes':>9} {'command s':>10} {'predict s':>10} {'volumes/s':>10} {'images/s':>9} {'efficiency':>10}")
    rate = {}
    for processes, (seconds, lines) in runs.items():
        done = [e for e in lines if e["event"] == "done"]
        predicted = sum(e["event"] == "predicted" for e in lines)
        if predicted != args.volumes or len(done) != processes:
            raise SystemExit(f"{processes} process(es): {predicted} volumes predicted, {len(done)} done events")
        predict_seconds = max(e["seconds"] for e in done)
        rate[processes] = images / predict_seconds
        efficiency = rate[processes] / (processes * rate[1])
        print(f"{processes:>9} {seconds:>10.1f} {predict_seconds:>10.1f} {args.volumes / predict_seconds:>10.2f} "
              f"{rate[processes]:>9.1f} {efficiency:>9.0%}")
    print(f"identical files: {checked} of {checked + len(differ)} (1 process against {args.processes})")
    if differ:
        raise SystemExit(f"outputs differ: {', '.join(differ[:10])}")


if __name__ == "__main__":
    main()
