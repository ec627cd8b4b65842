"""Training under torchrun: images/s of 1 process against N, and the scaling efficiency (issue 15; docs/SCALE.md).

Trains one job (an LA volume with its expert labels, ``--method`` at ``--size`` px, ``--batch`` labelled and
``--batch`` unlabelled slices per process and step, ``--threads`` torch thread(s) per process) three ways:

- ``1 process``: ``semiseg train`` at ``--batch`` per step;
- ``N processes, same global batch``: ``torchrun --nproc-per-node N`` at ``--batch / N`` per rank, the run
  of one process shared out (strong scaling: what a user gets for the same recipe);
- ``N processes, batch per rank``: ``--batch`` per rank, N times the global batch (weak scaling).

The rate is read from rank 0's ``progress.jsonl``: the images (labelled plus unlabelled slices, all ranks)
of the iterations after the first ``--warmup`` ones, over the seconds between them (the ``elapsed`` of its
``iteration`` events), so process start, data preparation and the first steps are left out. Efficiency is
the rate of N processes over N times the rate of one. The full run, on an otherwise idle machine:

    python benchmarks/train_distributed.py --iterations 60 --processes 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from predict_many import la_scans
from predict_sharded import timed


def job(folder: Path, image: Path, labels: Path, method: str, batch: int, args: argparse.Namespace) -> Path:
    """A job folder training ``method`` on ``image`` for ``--iterations`` steps, nothing else (no shape prior,
    previews, validation, checkpoints or predictions: they do not change a step's speed)."""
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({
        "format_version": 1, "image": str(image), "labels": str(labels), "method": method, "predict": False,
        "completion": {"enabled": False, "preview_every": 0},
        "train": {"iterations": args.iterations, "size": args.size, "batch_labeled": batch, "batch_unlabeled": batch,
                  "val_every": 0, "checkpoint_every": 0, "log_every": 1, "threads": args.threads, "device": "cpu",
                  "precision": args.precision, "seed": 0},
    }))
    return folder


def rate(run_dir: Path, images_per_step: int, warmup: int) -> tuple[float, float]:
    """(images/s, s/it) of the iterations after ``warmup``, from rank 0's progress events."""
    events = [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]
    elapsed = {e["iteration"]: e["elapsed"] for e in events if e["event"] == "iteration"}
    last = max(elapsed)
    if warmup >= last or warmup not in elapsed:
        raise SystemExit(f"--warmup {warmup} leaves no timed iteration of {last}")
    seconds = elapsed[last] - elapsed[warmup]
    return images_per_step * (last - warmup) / seconds, seconds / (last - warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the LA folder (default: ../shared/data/la)")
    p.add_argument("--method", default="unimatch")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10, help="iterations left out of the rate")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4, help="labelled (and unlabelled) slices per process and step")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--precision", default="auto", help="fp32, bf16 or auto (the engine's default)")
    args = p.parse_args()
    n = args.processes
    if n < 2 or args.batch % n:
        p.error(f"--processes must be >= 2 and divide --batch ({args.batch})")
    scan = la_scans(args.data)[0]
    labels = scan.parent.parent / "labels" / scan.name
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), "-m",
                "semiseg", "train", "--job"]
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="semiseg-train-distributed-") as folder:
        tmp = Path(folder)
        runs = [
            ("1 process", 1, args.batch, [sys.executable, "-m", "semiseg", "train", "--job"]),
            (f"{n} processes, same global batch", n, args.batch // n, torchrun),
            (f"{n} processes, batch per rank", n, args.batch, torchrun),
        ]
        for i, (name, processes, batch, command) in enumerate(runs):
            folder_i = job(tmp / f"job{i}", scan, labels, args.method, batch, args)
            seconds, _ = timed([*command, str(folder_i)], args.threads)
            images_s, s_it = rate(folder_i / "run", 2 * batch * processes, args.warmup)
            rows.append((name, processes, 2 * batch * processes, seconds, s_it, images_s))
    print(f"{args.method} at {args.size} px, {args.iterations} iterations (rate after {args.warmup}), "
          f"{args.threads} torch thread(s) per process, precision {args.precision}, LA volume {scan.name}; "
          f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'run':<34} {'global batch':>12} {'command s':>10} {'s/it':>7} {'images/s':>9} {'efficiency':>10}")
    one = rows[0][5]
    for name, processes, images, seconds, s_it, images_s in rows:
        print(f"{name:<34} {images:>12} {seconds:>10.1f} {s_it:>7.3f} {images_s:>9.1f} "
              f"{images_s / (processes * one):>9.0%}")


if __name__ == "__main__":
    main()
