"""Training and inference throughput on this CPU, float32 against bfloat16 in one run, with FLOP utilisation.

Run: python benchmarks/throughput.py [--method supervised] [--size 256] [--batch 12] [--steps 10]
(the same as `semiseg bench throughput`), or, for the table of docs/BENCHMARKS.md section 3,
python benchmarks/throughput.py --methods supervised,fixmatch,unimatch,crossmatch,semsim,refguided --sizes
64,128,256 --batch 4 --steps 3
"""

import argparse
import sys

from semiseg_bench.throughput import add_arguments, main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    sys.exit(main(p.parse_args()))
