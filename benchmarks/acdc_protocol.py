"""ACDC 3- or 7-labelled-patient protocol for every method at one CPU budget.

Run (the budget of docs/BENCHMARKS.md; the same as `semiseg bench acdc`):
    python benchmarks/acdc_protocol.py --labeled labeled_3 --iterations 1000 --size 128 --batch 4 \
        --curve-every 100 --out bench-results/acdc3.jsonl --plot docs/images/acdc3_curve.png
Each finished method appends one JSON line to --out (a re-run skips methods already there), the
learning curve of the best method and `supervised` is drawn to --plot, and the summary table is
printed last. --methods chooses the rows; `full` is `supervised` on all 70 train patients labelled
(the upper bound at the same budget). The logic lives in semiseg_bench.acdc.
"""

from __future__ import annotations

import argparse
import sys

from semiseg_bench.acdc import add_arguments, main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    sys.exit(main(p.parse_args()))
