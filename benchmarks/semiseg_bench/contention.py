"""The engine on a busy CPU: seconds per training step while other processes hold cores.

The engine always shares the machine: Slicer renders and the web page's server draws slice views
while it trains. This benchmark measures what that costs, and what the thread count and the way
OpenMP threads wait do about it (:mod:`semiseg.training.cpu`). For each number of busy neighbours (processes
that keep one core busy in a Python loop, as a render loop or a second training would), each torch
thread count and each way of waiting, one fresh process times the real
:class:`~semiseg.training.Trainer` step: the ``train`` measurement of :mod:`semiseg_bench.scaling`
(synthetic volumes, steady-state iteration, median of ``--steps`` steps after an untimed one).

- Threads: a number, or ``0`` = the engine's own choice (:func:`semiseg.training.cpu.training_threads`,
  ``OMP_NUM_THREADS`` removed from the child); the record keeps the count it chose.
- Ways of waiting, for fixed counts above one: ``default`` (libgomp's: 300 000 spins, then sleep),
  ``PASSIVE`` (``OMP_WAIT_POLICY=PASSIVE``: sleep at once), ``ACTIVE`` (spin for good), ``spin=N``
  (``GOMP_SPINCOUNT=N``). One thread never waits for another, and the engine's choice runs with the
  defaults, so those are timed once per load (policy ``-``).

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

from .common import append_jsonl, check_methods, format_table, int_list, str_list
from .scaling import run_child

__all__ = ["add_arguments", "busy_neighbours", "main", "run", "summary_table"]

POLICIES = ("default", "PASSIVE")
_OPENMP_WAIT = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def policy_env(policy: str) -> dict[str, str | None]:
    """The environment of a child for one way of waiting (``None``: variable removed); see the module docstring."""
    env: dict[str, str | None] = dict.fromkeys(_OPENMP_WAIT)
    if policy.upper() in ("PASSIVE", "ACTIVE"):
        env["OMP_WAIT_POLICY"] = policy.upper()
    elif policy.startswith("spin="):
        env["GOMP_SPINCOUNT"] = str(int(policy[5:]))
    elif policy not in ("default", "-"):
        raise ValueError(f"unknown wait policy {policy!r}")
    return env


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
    threads = args.threads if args.threads is not None else sorted({1, cores}) + [0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    records: list[dict[str, Any]] = []
    train = {
        "kind": "train",
        "method": args.method,
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "plane": args.plane,
        "slices": args.slices,
        "labeled": args.labeled,
        "volumes": 1,
        "peak_gflops": None,
    }
    for neighbours in busy:
        for n in threads:
            for policy in ["-"] if n in (0, 1) else args.policies:
                env = {**policy_env(policy), **({"OMP_NUM_THREADS": None} if n == 0 else {})}
                with busy_neighbours(neighbours):
                    result = run_child({**train, "threads": n}, env=env)
                rec = {
                    "busy": neighbours,
                    "threads": n,
                    "policy": policy,
                    "cores": cores,
                    "method": args.method,
                    "size": args.size,
                    "batch": args.batch,
                    "seconds_per_iteration": result["seconds_per_iteration"],
                    "step_seconds": result["step_seconds"],
                    "child_threads": result["threads"],
                    "child_openmp": result.get("openmp_wait"),
                }
                records.append(rec)
                append_jsonl(out, rec)
                print(
                    f"busy {neighbours}  threads {n or 'auto'} ({rec['child_threads']})  policy {policy:8s}  "
                    f"{rec['seconds_per_iteration']:.3f} s/it",
                    flush=True,
                )
    return records


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """s/it per busy-neighbour count (rows) and thread count + policy (columns), with the slowdown against idle."""
    columns = list(dict.fromkeys((r["threads"], r["policy"]) for r in records))  # in the order they were run
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
            chosen = f" [{rec['child_threads']} thr]" if col[0] == 0 else ""
            cells.append(f"{rec['seconds_per_iteration']:.3f}{slow}{chosen}")
        rows.append(cells)
    headers = ["neighbours"] + [
        "engine's choice" if t == 0 else f"{t} thr {p}" if p != "-" else f"{t} thr" for t, p in columns
    ]
    first = records[0] if records else {}
    title = (
        f"s/iteration of {first.get('method')} at {first.get('size')} px, batch "
        f"{first.get('batch')}+{first.get('batch')}, "
        f"on {first.get('cores')} cores (slowdown against idle)"
    )
    return title + "\n" + format_table(headers, rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="supervised", help="the method whose step is timed")
    p.add_argument("--size", type=int, default=128, help="training size (pixels per side)")
    p.add_argument("--batch", type=int, default=4, help="labelled and unlabelled slices per step")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--busy", type=int_list, help="numbers of busy neighbour processes (default: 0 to the core count)")
    p.add_argument(
        "--threads", type=int_list, help="torch thread counts, 0 = the engine's choice (default: 1, the core count, 0)"
    )
    p.add_argument(
        "--policies",
        type=str_list,
        default=list(POLICIES),
        help="how OpenMP threads wait in the rows of a fixed count above one: default, PASSIVE, ACTIVE, spin=N",
    )
    p.add_argument("--plane", type=int, default=160, help="in-plane size of the synthetic volume")
    p.add_argument("--slices", type=int, default=12, help="slices of the synthetic volume")
    p.add_argument("--labeled", type=int, default=4, help="its labelled slices")
    p.add_argument("--out", default="bench-results/contention.jsonl", help="JSONL results (written afresh)")


def main(args: argparse.Namespace) -> int:
    from semiseg.errors import InputError

    check_methods([args.method])
    for policy in args.policies:
        try:
            policy_env(policy)
        except ValueError:
            raise InputError(f"unknown wait policy {policy!r}; use default, PASSIVE, ACTIVE or spin=N") from None
    records = run(args)
    print()
    print(summary_table(records))
    return 0
