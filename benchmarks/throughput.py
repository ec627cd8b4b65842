"""Training and inference throughput on this CPU, float32 against bfloat16 in one run, with FLOP utilisation.

Run: python benchmarks/throughput.py [--method supervised] [--size 256] [--batch 12] [--steps 10]
(the same as `semiseg bench throughput`), or, for the table of docs/BENCHMARKS.md section 3,
python benchmarks/throughput.py --methods supervised,fixmatch,unimatch,crossmatch,semsim,refguided --sizes
64,128,256 --batch 4 --steps 3
"""

import argparse

from semiseg.bench.throughput import compare_methods, measure_throughput, print_table

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--method", default="supervised")
    p.add_argument("--methods", default="", help="comma-separated methods: one row per method and size")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--sizes", default="", help="comma-separated sizes (with --methods)")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--steps", type=int, default=10, help="steps per interleaved block")
    p.add_argument("--blocks", type=int, default=3, help="blocks per precision")
    p.add_argument("--slices", type=int, default=24)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.methods:
        sizes = [int(s) for s in (a.sizes or str(a.size)).split(",")]
        print_table(compare_methods(a.methods.split(","), sizes, a.batch, a.steps, a.blocks, a.slices))
    else:
        print_table(
            measure_throughput(a.size, a.batch, a.steps, a.slices, device=a.device, method=a.method, blocks=a.blocks)
        )
