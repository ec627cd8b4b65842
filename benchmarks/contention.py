"""The engine's training step on a busy CPU: s/iteration with 0..cores busy neighbour processes, for 1 and
all threads, with libgomp's default wait policy and with the PASSIVE one the engine sets (semiseg.training.cpu).

Run (the budget of docs/BENCHMARKS.md; the same as `semiseg bench contention`), on an otherwise idle machine:
    python benchmarks/contention.py --out bench-results/contention.jsonl
The table is printed last. The logic and the definitions live in semiseg_bench.contention.
"""

from __future__ import annotations

import argparse
import sys

from semiseg_bench.contention import add_arguments, main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    sys.exit(main(p.parse_args()))
