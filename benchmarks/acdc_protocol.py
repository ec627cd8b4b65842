"""ACDC 3- or 7-labelled-patient protocol for every method at one CPU budget.

Run (the budget of docs/BENCHMARKS.md):
    python benchmarks/acdc_protocol.py --labeled labeled_3 --iterations 1000 --size 128 --batch 4 \
        --out bench-results/acdc3.jsonl
Each finished method appends one JSON line to --out (a re-run skips methods already there), and the
summary table is printed last. --methods chooses the rows; `full` is `supervised` on all 70 train
patients labelled (the upper bound at the same budget).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from semiseg.bench.acdc import load_acdc, run_method
from semiseg.config import TrainConfig

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "acdc"

# Our short-budget recipe (docs/BENCHMARKS.md): a supervised warm-up, then a ramp of the
# unsupervised weight. The papers' defaults (no warm-up, no ramp) are the methods' own defaults.
RECIPE = {"warmup": 0.2, "rampup": 0.3}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--labeled", default="labeled_3", choices=["labeled_3", "labeled_7"])
    p.add_argument("--methods", default="supervised,fixmatch,unimatch,crossmatch,semsim,refguided,full")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve-every", type=int, default=0, help="score intermediate weights every N iterations for the learning curve")
    p.add_argument("--paper-defaults", action="store_true", help="use the methods' paper defaults instead of our short-budget recipe")
    p.add_argument("--max-unlabeled", type=int, help="limit unlabelled patients (smoke runs)")
    p.add_argument("--max-val", type=int, help="limit scored patients (smoke runs)")
    p.add_argument("--out", default="bench-results/acdc.jsonl")
    p.add_argument("--runs", default="bench-results/runs")
    a = p.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["row"] for line in out.read_text().splitlines()} if out.exists() else set()
    cache = {}
    for row in a.methods.split(","):
        if row in done:
            continue
        labeled = "train" if row == "full" else a.labeled
        if labeled not in cache:
            cache[labeled] = load_acdc(a.data, labeled, a.size, a.max_unlabeled, a.max_val)
        data, val = cache[labeled]
        method = "supervised" if row == "full" else row
        options = {} if method == "supervised" or a.paper_defaults else dict(RECIPE)
        cfg = TrainConfig(iterations=a.iterations, size=a.size, batch_labeled=a.batch, batch_unlabeled=a.batch, lr=a.lr,
                          seed=a.seed, device="cpu", val_every=0, checkpoint_every=max(1, a.iterations // 4))
        result = run_method(method, data, val, cfg, options, Path(a.runs) / f"{a.labeled}-{row}", a.curve_every)
        result["row"], result["protocol"], result["labeled_slices"] = row, labeled, len(data.labeled)
        with out.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps({"row": row, "mean_dice": result["scores"]["mean"]["dice"], "minutes": result["minutes"]}), flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    print(f"\n{'row':<12}{'RV':>7}{'Myo':>7}{'LV':>7}{'mean':>7}{'HD95':>8}{'ASD':>7}{'min':>7}{'s/it':>7}")
    for r in rows:
        c, m = r["scores"]["classes"], r["scores"]["mean"]
        print(f"{r['row']:<12}{c['RV']['dice']*100:7.1f}{c['Myo']['dice']*100:7.1f}{c['LV']['dice']*100:7.1f}{m['dice']*100:7.1f}"
              f"{m['hd95_vox']:8.1f}{m['asd_vox']:7.1f}{r['minutes']:7.1f}{r['seconds_per_iteration']:7.2f}")


if __name__ == "__main__":
    main()
