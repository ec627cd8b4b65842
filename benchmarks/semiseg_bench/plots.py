"""The benchmarks' figures (matplotlib, Agg backend): ACDC learning curves and Dice against k.

Both read the benchmarks' own JSONL records, so a figure can be redrawn from results without
training again::

    python -m semiseg_bench.plots curve bench-results/acdc3.jsonl docs/images/acdc3_curve.png
    python -m semiseg_bench.plots k bench-results/clinician_la.jsonl docs/images/clinician_la.png
"""

from __future__ import annotations

import argparse
import math
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["best_row", "plot_learning_curve", "dice_by_k", "plot_dice_vs_k"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def best_row(rows: Sequence[dict[str, Any]], exclude: Sequence[str] = ("supervised", "full")) -> dict[str, Any] | None:
    """The ACDC row with the highest final mean Dice among the methods (not ``supervised``/``full``)."""
    candidates = [r for r in rows if r.get("row") not in exclude and r.get("scores")]
    return max(candidates, key=lambda r: r["scores"]["mean"]["dice"], default=None)


def plot_learning_curve(rows: Sequence[dict[str, Any]], path: str | Path, names: Sequence[str] | None = None,
                        title: str = "") -> Path:
    """Mean Dice (%) on the scored patients against training minutes, one line per ACDC row.

    ``names`` defaults to the best method (:func:`best_row`), ``supervised`` and, when present,
    ``full`` (dashed: the upper bound at the same budget). Each row's ``curve`` holds
    ``{"iteration", "minutes", "dice"}`` points; minutes count training only (scoring excluded).
    """
    plt = _pyplot()
    by_name = {r["row"]: r for r in rows}
    if names is None:
        best = best_row(rows)
        names = [n for n in ([best["row"]] if best else []) + ["supervised", "full"] if n in by_name]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        curve = by_name[name].get("curve") or []
        ax.plot([p["minutes"] for p in curve], [100 * p["dice"] for p in curve], marker="o", ms=3,
                linestyle="--" if name == "full" else "-", label=name)
    ax.set_xlabel("training minutes (CPU)")
    ax.set_ylabel("mean Dice on val patients (%)")
    return _save(plt, fig, ax, title, path)


def _save(plt: Any, fig: Any, ax: Any, title: str, path: str | Path) -> Path:
    """Percent axis, grid, legend and title; the figure written to ``path`` (folders made) and closed."""
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(textwrap.fill(title, 80), fontsize=8)
    return save_figure(plt, fig, path)


def save_figure(plt: Any, fig: Any, path: str | Path) -> Path:
    """``fig`` laid out, written to ``path`` (its folders made) and closed."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def dice_by_k(records: Sequence[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    """Clinician records -> ``{row: {k: {"mean", "std", "n"}}}`` of the hidden-slice mean Dice over volumes."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("dice") is not None:
            values[r["row"]][int(r["k"])].append(float(r["dice"]))
    out: dict[str, dict[int, dict[str, float]]] = {}
    for row, per_k in values.items():
        out[row] = {}
        for k, v in sorted(per_k.items()):
            mean = sum(v) / len(v)
            std = math.sqrt(sum((x - mean) ** 2 for x in v) / len(v))
            out[row][k] = {"mean": mean, "std": std, "n": len(v)}
    return out


def plot_dice_vs_k(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Hidden-slice Dice (%) against the number k of labelled slices, one line per row (mean +- std over volumes)."""
    plt = _pyplot()
    table = dice_by_k(records)
    fig, ax = plt.subplots(figsize=(6, 4))
    for row, per_k in table.items():
        ks = sorted(per_k)
        ax.errorbar(ks, [100 * per_k[k]["mean"] for k in ks], yerr=[100 * per_k[k]["std"] for k in ks],
                    marker="o", capsize=3, label=row)
    all_k = sorted({k for per_k in table.values() for k in per_k})
    ax.set_xticks(all_k)
    ax.set_xlabel("labelled slices per volume (k)")
    ax.set_ylabel("Dice on hidden slices (%)\nmean ± std over volumes")
    return _save(plt, fig, ax, title, path)


def main(argv: list[str] | None = None) -> None:
    from .common import read_jsonl

    p = argparse.ArgumentParser(description="Redraw a benchmark figure from its JSONL results.")
    p.add_argument("kind", choices=["curve", "k"])
    p.add_argument("results")
    p.add_argument("png")
    a = p.parse_args(argv)
    rows = read_jsonl(a.results)
    path = plot_learning_curve(rows, a.png) if a.kind == "curve" else plot_dice_vs_k(rows, a.png)
    print(path)


if __name__ == "__main__":
    main()
