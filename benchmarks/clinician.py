"""The clinician scenario: k labelled slices per volume; contour interpolation vs supervised vs semi-supervised.

Run (the budget of docs/BENCHMARKS.md; the same as `semiseg bench clinician`):
    python benchmarks/clinician.py --dataset la --volumes 4 --k 1,2,3,5 --iterations 200 --size 96 \
        --out bench-results/clinician_la.jsonl --plot docs/images/clinician_la.png
Each finished (volume, k, row) appends one JSON line to --out (a re-run skips it), Dice against k
is drawn to --plot, and the summary table is printed last. The logic lives in semiseg_bench.clinician.
"""

from __future__ import annotations

import argparse
import sys

from semiseg_bench.clinician import add_arguments, main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    sys.exit(main(p.parse_args()))
