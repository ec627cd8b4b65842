"""Speed and memory per method and volume size: s/iteration, images/s, FLOP utilisation, inference s/volume,
time to the first usable pseudo-labels, peak RSS, and whether each grows linearly.

Run (the budget of docs/BENCHMARKS.md; the same as `semiseg bench scaling`):
    python benchmarks/scaling.py --out bench-results/scaling.jsonl
Every measurement runs in a fresh process; the tables are printed last (growth fits at the very
end). The logic and the definitions live in semiseg_bench.scaling.
"""

from __future__ import annotations

import argparse
import sys

from semiseg_bench.scaling import add_arguments, main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    sys.exit(main(p.parse_args()))
