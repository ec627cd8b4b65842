"""Pieces every benchmark shares: where the data is, JSONL results, peak memory, line fits, tables."""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "add_option_argument",
    "default_data_root",
    "read_jsonl",
    "append_jsonl",
    "peak_rss_mb",
    "linear_fit",
    "format_table",
    "int_list",
    "float_list",
    "str_list",
    "check_methods",
    "bench_train_config",
    "sparsify",
]


def default_data_root() -> Path:
    """``../shared/data`` beside the checkout of an editable install, else ``../shared/data`` of the working folder.

    ``SEMISEG_DATA`` overrides both.
    """
    if os.environ.get("SEMISEG_DATA"):
        return Path(os.environ["SEMISEG_DATA"])
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return beside if beside.is_dir() else Path("..") / "shared" / "data"


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (none when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record (NaN and infinities written as ``null``)."""
    from semiseg.inference.metrics import to_jsonable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(to_jsonable(record)) + "\n")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: ``VmHWM`` of ``/proc/self/status`` (Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any]:
    """Least-squares ``y = a + b x`` with R^2, the log-log slope and the growth of ``y`` per doubling of ``x``.

        ``ratio_per_doubling`` is ``(y_last / y_first) ** (1 / log2(x_last / x_first))``: 2.0 for a
        proportional growth, below 2 when a fixed cost ``a`` dominates, above 2 for a super-linear one.
        ``exponent`` is the least-squares slope of ``log y`` against ``log x`` (1 = linear). The verdict
        says ``linear`` when R^2 >= 0.98, ``flat`` when the fitted growth over the measured range is
        below 10 % of the mean, ``too few points to test`` with fewer than three distinct ``x`` (a
    line through two points always fits), else ``not linear``.
    """
    n = len(xs)
    if n < 2 or n != len(ys):
        return {"points": n, "verdict": "too few points"}
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    out: dict[str, Any] = {"points": n, "a": a, "b": b, "r2": r2}
    if all(x > 0 for x in xs) and all(y > 0 for y in ys) and xs[-1] != xs[0]:
        out["ratio_per_doubling"] = (ys[-1] / ys[0]) ** (1.0 / math.log2(xs[-1] / xs[0]))
        lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
        mlx, mly = sum(lx) / n, sum(ly) / n
        slx = sum((v - mlx) ** 2 for v in lx)
        out["exponent"] = sum((u - mlx) * (v - mly) for u, v in zip(lx, ly)) / slx if slx else 0.0
    growth = abs(b) * (max(xs) - min(xs))
    if my and growth < 0.1 * abs(my):
        out["verdict"] = "flat"
    elif len(set(xs)) < 3:
        out["verdict"] = "too few points to test"
    elif r2 >= 0.98:
        out["verdict"] = "linear"
    else:
        out["verdict"] = "not linear"
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return format(value, fmt)
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str = ".3g") -> str:
    """A plain-text table, columns right-aligned except the first; ``None``/NaN shown as ``-``."""
    cells = [[str(h) for h in headers]] + [[_cell(v, fmt) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_methods(names: Iterable[str]) -> None:
    """Raise :class:`~semiseg.errors.InputError` naming every unknown method and the valid ones."""
    from semiseg.errors import InputError
    from semiseg.methods import METHODS

    bad = sorted({m for m in names if m not in METHODS})
    if bad:
        raise InputError(f"unknown method(s) {bad}; valid methods: {', '.join(sorted(METHODS))}")


def int_list(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (for argparse)."""
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def float_list(text: str) -> list[float]:
    """``"0.1,0.25"`` -> ``[0.1, 0.25]`` (for argparse)."""
    return [float(x) for x in text.replace(" ", "").split(",") if x]


def str_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (for argparse)."""
    return [x for x in text.replace(" ", "").split(",") if x]


def add_option_argument(parser: Any, help: str) -> None:
    """``--option KEY=VALUE`` (repeatable): a method option over the recipe's (``args.option``, a list of pairs)."""
    from semiseg.settings import key_value

    parser.add_argument("--option", type=key_value, action="append", default=[], metavar="KEY=VALUE", help=help)


def bench_train_config(args: Any, **bookkeeping: Any) -> Any:
    """The :class:`~semiseg.training.config.TrainConfig` of a benchmark's command line: ``--iterations``,
    ``--size``, ``--batch`` (labelled and unlabelled), ``--lr``, ``--seed`` and ``--precision``, on the CPU
    without validation; ``bookkeeping`` sets the rest (checkpoints, logging, threads)."""
    from semiseg.training.config import TrainConfig

    return TrainConfig(
        iterations=args.iterations,
        size=args.size,
        batch_labeled=args.batch,
        batch_unlabeled=args.batch,
        lr=args.lr,
        seed=args.seed,
        precision=args.precision,
        device="cpu",
        val_every=0,
        **bookkeeping,
    )


def sparsify(labels: np.ndarray, axis: int, kept: Sequence[int]) -> np.ndarray:
    """A copy of ``labels`` (K, J, I) holding only the slices ``kept`` along IJK ``axis``."""
    out = np.zeros_like(labels)
    src, dst = np.moveaxis(labels, 2 - axis, 0), np.moveaxis(out, 2 - axis, 0)
    idx = list(kept)
    dst[idx] = src[idx]
    return out
