"""The engine on a busy CPU: seconds per training step while other processes hold cores.

The engine always shares the machine: Slicer renders and the web page's server draws slice views
while it trains. This benchmark measures what that costs and what the engine's OpenMP wait policy
does about it (:mod:`semiseg.cpu`). For each number of busy neighbours (processes that keep one
core busy in a Python loop, as a render loop or a second training would), each torch thread count
and each wait policy (``default``: ``OMP_WAIT_POLICY`` unset, libgomp spins before it sleeps;
``PASSIVE``: the engine's own setting, threads sleep at once), one fresh process times the real
:class:`~semiseg.training.Trainer` step: the ``train`` measurement of :mod:`semiseg.bench.scaling`
(synthetic volumes, steady-state iteration, median of ``--steps`` steps after an untimed one).
A single thread never waits for another, so it is timed once per load (policy ``-``).

Slowdown = the step time against the same threads and policy on the otherwise idle machine; run it
on a machine with nothing else running, or the "idle" row is not idle.

Run (the budget of docs/BENCHMARKS.md; the same as ``semiseg bench contention``)::

    python benchmarks/contention.py --out bench-results/contention.jsonl
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..cpu import WAIT_POLICY
from .common import append_jsonl, check_methods, format_table, int_list, str_list
from .scaling import run_child

__all__ = ["add_arguments", "busy_neighbours", "main", "run", "summary_table"]

POLICIES = ("default", "PASSIVE")
_SPIN = "import time\nwhile True:\n    time.perf_counter()\n"


@contextmanager
def busy_neighbours(count: int, settle: float = 0.5) -> Iterator[list[subprocess.Popen]]:
    """``count`` processes that each keep one core busy until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(count)]
    try:
        time.sleep(settle if count else 0.0)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (busy neighbours, threads, policy) step time as ``args`` says; writes ``args.out`` afresh."""
    cores = os.cpu_count() or 1
    busy = args.busy if args.busy is not None else list(range(cores + 1))
    threads = args.threads or sorted({1, cores})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    records: list[dict[str, Any]] = []
    train = {"kind": "train", "method": args.method, "size": args.size, "batch": args.batch, "steps": args.steps, "plane": args.plane,
             "slices": args.slices, "labeled": args.labeled, "volumes": 1, "peak_gflops": None}
    for neighbours in busy:
        for n in threads:
            for policy in (["-"] if n == 1 else args.policies):
                env = {WAIT_POLICY: None if policy in ("default", "-") else policy.upper()}
                with busy_neighbours(neighbours):
                    result = run_child({**train, "threads": n}, env=env)
                rec = {"busy": neighbours, "threads": n, "policy": policy, "cores": cores, "method": args.method, "size": args.size,
                       "batch": args.batch, "seconds_per_iteration": result["seconds_per_iteration"], "step_seconds": result["step_seconds"],
                       "child_threads": result["threads"], "child_wait_policy": result.get("omp_wait_policy")}
                records.append(rec)
                append_jsonl(out, rec)
                print(f"busy {neighbours}  threads {n}  policy {policy:8s}  {rec['seconds_per_iteration']:.3f} s/it", flush=True)
    return records


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """s/it per busy-neighbour count (rows) and thread count + policy (columns), with the slowdown against idle."""
    order = {p: i for i, p in enumerate(("-", "default", "ACTIVE", "PASSIVE"))}
    columns = sorted({(r["threads"], r["policy"]) for r in records}, key=lambda c: (c[0], order.get(c[1], len(order))))
    idle = {(r["threads"], r["policy"]): r["seconds_per_iteration"] for r in records if r["busy"] == 0}
    rows = []
    for busy in sorted({r["busy"] for r in records}):
        cells: list[Any] = [f"{busy} busy"]
        for col in columns:
            rec = next((r for r in records if r["busy"] == busy and (r["threads"], r["policy"]) == col), None)
            if rec is None:
                cells.append(None)
                continue
            base = idle.get(col)
            slow = f" (x{rec['seconds_per_iteration'] / base:.1f})" if base and busy else ""
            cells.append(f"{rec['seconds_per_iteration']:.3f}{slow}")
        rows.append(cells)
    headers = ["neighbours"] + [f"{t} thr {p}" if p != "-" else f"{t} thr" for t, p in columns]
    first = records[0] if records else {}
    title = (f"s/iteration of {first.get('method')} at {first.get('size')} px, batch {first.get('batch')}+{first.get('batch')}, "
             f"on {first.get('cores')} cores (slowdown against idle)")
    return title + "\n" + format_table(headers, rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="supervised", help="the method whose step is timed")
    p.add_argument("--size", type=int, default=128, help="training size (pixels per side)")
    p.add_argument("--batch", type=int, default=4, help="labelled and unlabelled slices per step")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--busy", type=int_list, help="numbers of busy neighbour processes (default: 0 to the core count)")
    p.add_argument("--threads", type=int_list, help="torch thread counts (default: 1 and the core count)")
    p.add_argument("--policies", type=str_list, default=list(POLICIES), help="OpenMP wait policies of the multi-thread rows")
    p.add_argument("--plane", type=int, default=160, help="in-plane size of the synthetic volume")
    p.add_argument("--slices", type=int, default=12, help="slices of the synthetic volume")
    p.add_argument("--labeled", type=int, default=4, help="its labelled slices")
    p.add_argument("--out", default="bench-results/contention.jsonl", help="JSONL results (written afresh)")


def main(args: argparse.Namespace) -> int:
    from ..errors import InputError

    check_methods([args.method])
    bad = [p for p in args.policies if p not in POLICIES and p.upper() not in ("ACTIVE", "PASSIVE")]
    if bad:
        raise InputError(f"unknown wait policy {bad}; use default, PASSIVE or ACTIVE")
    records = run(args)
    print()
    print(summary_table(records))
    return 0

