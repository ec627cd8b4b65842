"""Training images/s and inference slices/s at 256x256 on this CPU, with FLOP utilisation.

Run: python benchmarks/throughput.py [--size 256] [--batch 12] [--steps 10]
(the same as `semiseg bench throughput`).
"""

import argparse

from semiseg.bench.throughput import measure_throughput, print_table

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--slices", type=int, default=24)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    print_table(measure_throughput(a.size, a.batch, a.steps, a.slices, device=a.device))
