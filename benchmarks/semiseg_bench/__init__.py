"""The benchmarks behind ``semiseg bench`` (docs/BENCHMARKS.md); the scripts in ``benchmarks/`` call them too.

They live beside the engine, not in it: the Slicer extension ships ``semiseg`` without them, and they
need the ``bench`` extra. Each module has ``add_arguments(parser)`` and ``main(args) -> exit code``.
"""

from . import acdc, clinician, contention, review, scaling, throughput

COMMANDS = {
    "acdc": (acdc, "ACDC 3/7-labelled-patient protocol for every method, with a learning curve"),
    "clinician": (clinician, "k labelled slices per volume: contour interpolation vs supervised vs semi-supervised, "
                             "Dice against k"),
    "review": (review, "the correction loop of a study: confidence-ranked or random corrections, and interpolation"),
    "scaling": (scaling, "per-method speed, FLOP utilisation, memory and their growth with volume size and count"),
    "contention": (contention, "training step time with other processes busy on the cores, per thread count and "
                               "OpenMP wait policy"),
    "throughput": (throughput, "training images/s and inference slices/s against the matmul peak"),
}
"""``semiseg bench NAME``: the module and its one-line help."""
