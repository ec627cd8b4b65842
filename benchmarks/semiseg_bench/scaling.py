"""Speed and memory: per method and volume size, against this machine's matrix-multiply peak.

Every measurement runs in a fresh Python process (``python -m semiseg_bench.scaling --child SPEC``)
that reports its own peak resident memory (``VmHWM``, see :func:`~semiseg_bench.common.peak_rss_mb`),
so numbers never contaminate each other; a ``baseline`` process that only imports the engine gives
the memory every process pays anyway.

What is measured (definitions):

- **training** (per method and training size): seconds per iteration of the real
  :class:`~semiseg.training.Trainer` step (weak augmentation, the method's loss, backward, SGD),
  median of ``--steps`` steps after one untimed step, at a steady-state iteration (half-way through
  a long schedule, past any warm-up or ramp-up, so every method runs all its streams). Images/s =
  input slices consumed per second (labelled batch + each unlabelled batch the method draws);
  labelled images/s counts the labelled batch only. FLOPs per iteration are *counted*, not guessed:
  :class:`torch.utils.flop_counter.FlopCounterMode` around one real step counts every convolution,
  matrix multiply and attention product the method runs, forward and backward (no-grad pseudo-label
  passes count once, trained passes with their gradients). FLOP utilisation = counted FLOPs /
  measured seconds / :func:`~semiseg_bench.flops.matmul_peak_gflops`. The data are synthetic volumes
  written to disk in the child (content does not change the work done); "prepare" is reading them
  and building the slice sets, as ``semiseg train`` does.
- **inference** (one UNet for every method: the methods' heads and streams are training-only):
  seconds per volume of :func:`~semiseg.inference.predict_volume` (compute: resize, forward, softmax,
  resize back, confidence, entropy) and of :func:`~semiseg.inference.write_prediction` (file to
  files: read, predict, write labels/confidence/entropy/review), for volumes of growing slice count
  and for 1, 2, 4 volumes; FLOP utilisation from the UNet's forward FLOPs at the training size.
- **time to first usable pseudo-labels** (per method): on a real ACDC volume with k labelled slices
  (the clinician scenario), train a fixed schedule and, every ``--usable-every`` iterations, write a
  checkpoint, predict the volume and score Dice on the hidden slices (the clock is paused while
  scoring). Usable = hidden-slice Dice >= ``--usable-fraction`` (0.9) of the schedule's final Dice
  *and* >= ``--usable-min`` (0.5). Time to usable = preparing the data + training up to that
  checkpoint + saving it and predicting the volume; ``null`` when no checkpoint qualifies.
- **growth**: least-squares ``t = a + b n`` with R^2, the log-log exponent and the ratio per
  doubling (:func:`~semiseg_bench.common.linear_fit`) for inference against slices and volumes,
  preparation and step time against volumes, step time against pixels per slice, and memory.

Run (the budget of docs/BENCHMARKS.md; the same as ``semiseg bench scaling``)::

    python benchmarks/scaling.py --out bench-results/scaling.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from .common import (
    append_jsonl,
    check_methods,
    default_data_root,
    format_table,
    int_list,
    linear_fit,
    peak_rss_mb,
    str_list,
)

__all__ = ["add_arguments", "main", "run", "summary_tables", "run_child"]

NUM_CLASSES = 4


# -- children ---------------------------------------------------------------------------------
def _write_synthetic(
    folder: Path, name: str, slices: int, plane: int, seed: int, labeled: int = 0
) -> tuple[Path, Path | None]:
    """A (slices, plane, plane) float32 volume (smooth blobs plus noise), and labels on ``labeled`` slices."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:slices, :plane, :plane]
    r = np.hypot(y - plane / 2, x - plane / 2)
    image = (0.3 + 0.4 * (r < plane / 4) + 0.1 * rng.standard_normal((slices, plane, plane))).astype(np.float32)
    img_path = folder / f"{name}.nii"
    sitk.WriteImage(sitk.GetImageFromArray(image), str(img_path))
    if not labeled:
        return img_path, None
    labels = np.zeros((slices, plane, plane), np.uint8)
    rings = np.broadcast_to(np.minimum(3, 1 + (r // (plane / 12)).astype(np.uint8)), (slices, plane, plane)) * (
        r < plane / 4
    )
    keep = np.linspace(0, slices - 1, labeled + 2)[1:-1].round().astype(int)
    labels[keep] = rings[keep]
    lab_path = folder / f"{name}_labels.nii"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(lab_path))
    return img_path, lab_path


def _child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: F401

    from semiseg import training  # noqa: F401
    from semiseg.methods import METHODS  # noqa: F401

    return {}


def _child_train(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from semiseg.io.slices import build_slice_sets, load_volume
    from semiseg.models import UNet2D
    from semiseg.training import TrainData, Trainer
    from semiseg.training.config import TrainConfig
    from semiseg.training.progress import ProgressLog

    from .flops import forward_flops

    size, batch = spec["size"], spec["batch"]
    if spec["labeled"] < 1:
        raise ValueError("the first training volume needs at least one labelled slice")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = [
            _write_synthetic(tmp_path, f"v{i}", spec["slices"], spec["plane"], i, spec["labeled"] if i == 0 else 0)
            for i in range(spec["volumes"])
        ]
        t = time.perf_counter()
        first = load_volume(files[0][0], files[0][1], NUM_CLASSES)
        others = [load_volume(img) for img, _ in files[1:]]
        labeled, val, unl = build_slice_sets([first], others, 2, size, min_val_slices=10**9)
        prepare_s = time.perf_counter() - t
        data = TrainData(labeled, val, unl, NUM_CLASSES)
        cfg = TrainConfig(
            iterations=1000,
            size=size,
            batch_labeled=batch,
            batch_unlabeled=batch,
            device="cpu",
            val_every=0,
            checkpoint_every=0,
            threads=spec["threads"],
        )
        trainer = Trainer(
            cfg,
            spec["method"],
            spec.get("options") or {},
            NUM_CLASSES,
            tmp_path / "run",
            log=ProgressLog(None, stream=None),
        )
        trainer.iteration = cfg.iterations // 2  # steady state: past any warm-up / ramp-up
        trainer.step(data)
        with FlopCounterMode(display=False) as counter:
            trainer.step(data)
        flops = counter.get_total_flops()
        times = []
        for _ in range(spec["steps"]):
            t = time.perf_counter()
            trainer.step(data)
            times.append(time.perf_counter() - t)
        fwd = forward_flops(UNet2D(1, NUM_CLASSES).eval(), torch.zeros(1, 1, size, size))
        inputs = batch * (1 + trainer.method.unlabeled_batches)
    step_s = statistics.median(times)
    peak = spec["peak_gflops"]
    return {
        "seconds_per_iteration": step_s,
        "step_seconds": times,
        "images_per_s": inputs / step_s,
        "labeled_images_per_s": batch / step_s,
        "input_images_per_iteration": inputs,
        "gflop_per_iteration": flops / 1e9,
        "unet_forward_gflop_per_image": fwd / 1e9,
        "forward_equivalents_per_labeled_image": flops / (fwd * batch),
        "achieved_gflops": flops / 1e9 / step_s,
        "flop_utilisation": flops / 1e9 / step_s / peak if peak else None,
        "prepare_seconds": prepare_s,
        "labeled_slices": len(labeled),
        "unlabeled_slices": len(unl),
        "threads": torch.get_num_threads(),
    }


def _child_infer(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from semiseg.inference import Predictor, predict_volume, write_prediction
    from semiseg.io.slices import load_volume
    from semiseg.models import UNet2D

    from .flops import forward_flops

    predictor = Predictor(spec["checkpoint"], "cpu", batch_size=spec["batch"])
    predictor.probabilities(np.zeros((2, 32, 32), np.float32), 2)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = [
            _write_synthetic(tmp_path, f"v{i}", spec["slices"], spec["plane"], i)[0] for i in range(spec["volumes"])
        ]
        volume = load_volume(files[0])
        t = time.perf_counter()
        predict_volume(predictor, volume, 2)
        predict_s = time.perf_counter() - t
        del volume
        end_to_end = []
        for i, path in enumerate(files):
            t = time.perf_counter()
            write_prediction(predictor, path, tmp_path / f"out{i}", 2)
            end_to_end.append(time.perf_counter() - t)
    fwd = forward_flops(UNet2D(1, predictor.num_classes).eval(), torch.zeros(1, 1, predictor.size, predictor.size))
    flops = fwd * spec["slices"]
    peak = spec["peak_gflops"]
    return {
        "predict_seconds_per_volume": predict_s,
        "slices_per_s": spec["slices"] / predict_s,
        "end_to_end_seconds_per_volume": statistics.mean(end_to_end),
        "end_to_end_seconds_total": sum(end_to_end),
        "gflop_per_volume": flops / 1e9,
        "flop_utilisation": flops / 1e9 / predict_s / peak if peak else None,
        "model_size": predictor.size,
        "threads": torch.get_num_threads(),
    }


def _child_first_usable(spec: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    from semiseg.inference import Predictor, predict_volume
    from semiseg.io.slices import build_slice_sets, labeled_slice_indices, load_volume
    from semiseg.training import TrainData, Trainer
    from semiseg.training.config import TrainConfig
    from semiseg.training.progress import ProgressLog

    from .acdc import CLASS_NAMES
    from .clinician import keep_slices, score_hidden, sparsify

    t0 = time.perf_counter()
    volume = load_volume(spec["image"], spec["labels"], len(CLASS_NAMES))
    kept = keep_slices(labeled_slice_indices(volume.labels, 2), spec["k"])
    sparse = dataclasses.replace(volume, labels=sparsify(volume.labels, 2, kept))
    others = [load_volume(p) for p in spec["unlabeled"]] if spec["method"] != "supervised" else []
    labeled, val, unl = build_slice_sets([sparse], others, 2, spec["size"], min_val_slices=10**9)
    prepare_s = time.perf_counter() - t0
    cfg = TrainConfig(
        iterations=spec["iterations"],
        size=spec["size"],
        batch_labeled=spec["batch"],
        batch_unlabeled=spec["batch"],
        lr=spec["lr"],
        seed=spec["seed"],
        device="cpu",
        val_every=0,
        checkpoint_every=0,
        threads=spec["threads"],
    )
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            cfg,
            spec["method"],
            spec.get("options") or {},
            len(CLASS_NAMES),
            tmp,
            meta={"axis": 2},
            log=ProgressLog(None, stream=None),
        )
        train_s = 0.0
        t = time.perf_counter()

        def checkpoint(it: int) -> None:
            nonlocal train_s, t
            train_s += time.perf_counter() - t
            ts = time.perf_counter()
            trainer.save()
            pred = predict_volume(Predictor(trainer.checkpoint_path, "cpu"), volume, 2)["labels"]
            pseudo_s = time.perf_counter() - ts
            dice = score_hidden(pred, volume.labels, kept, 2, len(CLASS_NAMES), volume.spacing_kji, CLASS_NAMES)["dice"]
            points.append({"iteration": it, "train_seconds": train_s, "pseudo_label_seconds": pseudo_s, "dice": dice})
            t = time.perf_counter()

        def on_step(it: int, _: dict[str, Any]) -> None:
            if it % spec["every"] == 0 and it < cfg.iterations:
                checkpoint(it)

        trainer.fit(TrainData(labeled, val, unl, len(CLASS_NAMES)), on_step=on_step)
        checkpoint(cfg.iterations)
    final = points[-1]["dice"]
    threshold = max(spec["usable_fraction"] * final, spec["usable_min"])
    first = next((p for p in points if p["dice"] >= threshold), None)
    return {
        "kept": kept,
        "prepare_seconds": prepare_s,
        "final_dice": final,
        "usable_threshold": threshold,
        "curve": points,
        "usable_iteration": first["iteration"] if first else None,
        "time_to_usable_seconds": prepare_s + first["train_seconds"] + first["pseudo_label_seconds"] if first else None,
        "seconds_per_iteration": points[-1]["train_seconds"] / cfg.iterations,
    }


CHILDREN = {
    "baseline": _child_baseline,
    "train": _child_train,
    "infer": _child_infer,
    "first_usable": _child_first_usable,
}


def _child_main(argv: list[str]) -> int:
    spec = json.loads(argv[argv.index("--child") + 1])
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
    t = time.perf_counter()
    result = CHILDREN[spec["kind"]](spec)
    openmp_wait = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    result.update(peak_rss_mb=peak_rss_mb(), child_seconds=time.perf_counter() - t, openmp_wait=openmp_wait)
    from semiseg.inference.metrics import to_jsonable

    print(json.dumps(to_jsonable(result)))
    return 0


def run_child(spec: dict[str, Any], timeout: float = 3600, env: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh ``python -m semiseg_bench.scaling --child`` process; its last stdout line.

    ``env`` changes the child's environment over this process's: a ``None`` value removes the variable.
    """
    child_env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    proc = subprocess.run(
        [sys.executable, "-m", "semiseg_bench.scaling", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec['kind']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the parent -------------------------------------------------------------------------------
def _make_checkpoint(folder: Path, size: int) -> Path:
    """An untrained supervised checkpoint at ``size`` (inference cost does not depend on the weights)."""
    from semiseg.training import Trainer
    from semiseg.training.config import TrainConfig
    from semiseg.training.progress import ProgressLog

    cfg = TrainConfig(iterations=1, size=size, device="cpu")
    trainer = Trainer(cfg, "supervised", {}, NUM_CLASSES, folder, meta={"axis": 2}, log=ProgressLog(None, stream=None))
    return trainer.save()


def _usable_case(args: argparse.Namespace) -> tuple[Path, Path, list[str]]:
    root = Path(args.data) if args.data else default_data_root() / "acdc"
    image, labels = root / "images" / f"{args.usable_case}.nii.gz", root / "labels" / f"{args.usable_case}.nii.gz"
    splits = json.loads((root / "splits.json").read_text())
    patient = args.usable_case.split("_")[0]
    others = sorted(
        str(p)
        for p in (root / "images").glob("*.nii.gz")
        if p.name.split("_")[0] in set(splits["train"]) and p.name.split("_")[0] != patient
    )
    return image, labels, others[: args.usable_unlabeled]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement as ``args`` says; writes ``args.out`` afresh; returns the records (summary last)."""
    import torch

    from semiseg.methods import METHODS

    from .flops import matmul_peak_gflops

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    records: list[dict[str, Any]] = []

    def record(kind: str, params: dict[str, Any], result: dict[str, Any]) -> None:
        rec = {"kind": kind, **params, **result}
        records.append(rec)
        append_jsonl(out, rec)
        brief = {
            k: rec[k]
            for k in (
                "kind",
                "method",
                "size",
                "slices",
                "volumes",
                "seconds_per_iteration",
                "predict_seconds_per_volume",
                "time_to_usable_seconds",
                "peak_rss_mb",
            )
            if k in rec
        }
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in brief.items()}), flush=True)

    methods = args.methods or list(METHODS)
    peak = matmul_peak_gflops()
    record(
        "machine",
        {},
        {
            "matmul_peak_gflops": peak,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
        },
    )
    common = {"threads": args.threads, "peak_gflops": peak}
    t = time.perf_counter()
    base = run_child({"kind": "baseline", **common})
    record("baseline", {}, {**base, "startup_seconds": time.perf_counter() - t})
    train_base = {
        "plane": args.plane,
        "slices": args.slices,
        "labeled": args.labeled,
        "batch": args.batch,
        "steps": args.steps,
    }
    for method in methods:
        for size in args.train_sizes:
            params = {"method": method, "size": size, "volumes": 1, **train_base}
            record("train", params, run_child({"kind": "train", **params, **common}))
    for method in args.volume_methods or []:
        for volumes in args.train_volumes:
            if volumes == 1 and args.volume_size in args.train_sizes and method in methods:
                continue  # measured above
            params = {"method": method, "size": args.volume_size, "volumes": volumes, **train_base}
            record("train", params, run_child({"kind": "train", **params, **common}))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _make_checkpoint(Path(tmp), args.infer_size)
        infer_base = {"plane": args.plane, "size": args.infer_size, "batch": 16}
        for slices in args.infer_slices:
            params = {"slices": slices, "volumes": 1, **infer_base}
            record("infer", params, run_child({"kind": "infer", "checkpoint": str(ckpt), **params, **common}))
        for volumes in args.infer_volumes:
            if volumes == 1 and args.infer_volume_slices in args.infer_slices:
                continue
            params = {"slices": args.infer_volume_slices, "volumes": volumes, **infer_base}
            record("infer", params, run_child({"kind": "infer", "checkpoint": str(ckpt), **params, **common}))
    usable_methods = list(METHODS) if args.usable_methods is None else args.usable_methods
    if usable_methods:
        from .acdc import RECIPE

        image, labels, others = _usable_case(args)
        for method in usable_methods:
            params = {
                "method": method,
                "case": args.usable_case,
                "k": args.usable_k,
                "iterations": args.usable_iterations,
                "every": args.usable_every,
                "size": args.usable_size,
                "batch": args.batch,
                "unlabeled_volumes": len(others),
            }
            spec = {
                "kind": "first_usable",
                **params,
                **common,
                "image": str(image),
                "labels": str(labels),
                "unlabeled": others,
                "lr": args.lr,
                "seed": 0,
                "options": {} if method == "supervised" or args.paper_defaults else dict(RECIPE),
                "usable_fraction": args.usable_fraction,
                "usable_min": args.usable_min,
            }
            record("first_usable", params, run_child(spec))
    record("summary", {}, {"growth": growth(records)})
    return records


def _fit(points: list[tuple[float, float]]) -> dict[str, Any]:
    points = sorted(points)
    return linear_fit([p[0] for p in points], [p[1] for p in points])


def growth(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Line fits of every measured growth (see :func:`~semiseg_bench.common.linear_fit`)."""
    fits: dict[str, dict[str, Any]] = {}
    infer = [r for r in records if r["kind"] == "infer"]
    one = [r for r in infer if r["volumes"] == 1]
    if len({r["slices"] for r in one}) >= 2:
        fits["inference seconds vs slices per volume"] = _fit(
            [(r["slices"], r["predict_seconds_per_volume"]) for r in one]
        )
        fits["inference peak RSS MB vs slices per volume"] = _fit([(r["slices"], r["peak_rss_mb"]) for r in one])
    sweep = max(infer, key=lambda r: r["volumes"])["slices"] if infer else None
    vols = [r for r in infer if r["slices"] == sweep]
    if len({r["volumes"] for r in vols}) >= 2:
        fits["inference seconds (file to files) vs volumes"] = _fit(
            [(r["volumes"], r["end_to_end_seconds_total"]) for r in vols]
        )
    train = [r for r in records if r["kind"] == "train"]
    for method in sorted({r["method"] for r in train}):
        mine = [r for r in train if r["method"] == method]
        by_size = [r for r in mine if r["volumes"] == 1]
        if len({r["size"] for r in by_size}) >= 2:
            fits[f"{method}: s/iteration vs pixels per slice"] = _fit(
                [(r["size"] ** 2, r["seconds_per_iteration"]) for r in by_size]
            )
            fits[f"{method}: training peak RSS MB vs pixels per slice"] = _fit(
                [(r["size"] ** 2, r["peak_rss_mb"]) for r in by_size]
            )
        size = max((r["size"] for r in mine if r["volumes"] > 1), default=None)
        by_vol = [r for r in mine if r["size"] == size]
        if size is not None and len({r["volumes"] for r in by_vol}) >= 2:
            fits[f"{method}: prepare seconds vs volumes"] = _fit([(r["volumes"], r["prepare_seconds"]) for r in by_vol])
            fits[f"{method}: s/iteration vs volumes"] = _fit(
                [(r["volumes"], r["seconds_per_iteration"]) for r in by_vol]
            )
            fits[f"{method}: training peak RSS MB vs volumes"] = _fit(
                [(r["volumes"], r["peak_rss_mb"]) for r in by_vol]
            )
    return fits


def summary_tables(records: Sequence[dict[str, Any]]) -> str:
    """The tables printed at the end (growth last)."""
    machine = next(r for r in records if r["kind"] == "machine")
    base = next((r for r in records if r["kind"] == "baseline"), {"peak_rss_mb": 0.0})
    parts = [
        f"matmul peak {machine['matmul_peak_gflops']:.1f} GFLOP/s ({machine['threads']} threads); an engine "
        f"process that only "
        f"imports: {base['peak_rss_mb']:.0f} MB peak RSS, {base.get('startup_seconds', 0.0):.1f} s to start (not "
        f"in the times below)"
    ]
    train = [r for r in records if r["kind"] == "train"]
    if train:
        parts.append(
            "training (synthetic volumes of {} slices {}x{}, batch {}+{}, median of {} steps)".format(
                train[0]["slices"],
                train[0]["plane"],
                train[0]["plane"],
                train[0]["batch"],
                train[0]["batch"],
                train[0]["steps"],
            )
        )
        parts.append(
            format_table(
                [
                    "method",
                    "size",
                    "volumes",
                    "s/it",
                    "images/s",
                    "GFLOP/it",
                    "fwd-equiv",
                    "FLOP util %",
                    "prepare s",
                    "peak RSS MB",
                ],
                [
                    [
                        r["method"],
                        r["size"],
                        r["volumes"],
                        r["seconds_per_iteration"],
                        r["images_per_s"],
                        r["gflop_per_iteration"],
                        r["forward_equivalents_per_labeled_image"],
                        100 * (r["flop_utilisation"] or 0),
                        r["prepare_seconds"],
                        r["peak_rss_mb"],
                    ]
                    for r in train
                ],
            )
        )
    infer = [r for r in records if r["kind"] == "infer"]
    if infer:
        parts.append(
            f"inference (model size {infer[0]['size']}, slices {infer[0]['plane']}x{infer[0]['plane']}; same UNet "
            f"for every method)"
        )
        parts.append(
            format_table(
                [
                    "slices",
                    "volumes",
                    "predict s/vol",
                    "slices/s",
                    "FLOP util %",
                    "file-to-files s/vol",
                    "total s",
                    "peak RSS MB",
                ],
                [
                    [
                        r["slices"],
                        r["volumes"],
                        r["predict_seconds_per_volume"],
                        r["slices_per_s"],
                        100 * (r["flop_utilisation"] or 0),
                        r["end_to_end_seconds_per_volume"],
                        r["end_to_end_seconds_total"],
                        r["peak_rss_mb"],
                    ]
                    for r in infer
                ],
            )
        )
    usable = [r for r in records if r["kind"] == "first_usable"]
    if usable:
        u = usable[0]
        parts.append(
            f"time to first usable pseudo-labels (ACDC {u['case']}, k={u['k']}, {u['iterations']} iterations at "
            f"{u['size']}px, "
            f"batch {u['batch']}+{u['batch']}, checkpoint every {u['every']}; usable = Dice >= max(0.9 x final, 0.5))"
        )
        parts.append(
            format_table(
                ["method", "final Dice %", "usable at it", "time to usable s", "s/it", "prepare s", "peak RSS MB"],
                [
                    [
                        r["method"],
                        100 * r["final_dice"],
                        r["usable_iteration"],
                        r["time_to_usable_seconds"],
                        r["seconds_per_iteration"],
                        r["prepare_seconds"],
                        r["peak_rss_mb"],
                    ]
                    for r in usable
                ],
            )
        )
    summary = next((r for r in records if r["kind"] == "summary"), None)
    if summary and summary["growth"]:
        parts.append("growth: least squares t = a + b n")
        parts.append(
            format_table(
                ["quantity", "a", "b", "R^2", "exponent", "x per doubling", "verdict"],
                [
                    [
                        name,
                        f.get("a"),
                        f.get("b"),
                        f.get("r2"),
                        f.get("exponent"),
                        f.get("ratio_per_doubling"),
                        f["verdict"],
                    ]
                    for name, f in summary["growth"].items()
                ],
            )
        )
    return "\n\n".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", type=str_list, help="methods to time (default: every registered method)")
    p.add_argument("--train-sizes", type=int_list, default=[64, 128, 256], help="training sizes (pixels per side)")
    p.add_argument("--batch", type=int, default=4, help="labelled and unlabelled slices per step")
    p.add_argument("--steps", type=int, default=5, help="timed steps per training measurement")
    p.add_argument("--plane", type=int, default=256, help="in-plane size of the synthetic volumes")
    p.add_argument("--slices", type=int, default=40, help="slices per synthetic training volume")
    p.add_argument("--labeled", type=int, default=5, help="labelled slices in the first training volume")
    p.add_argument(
        "--volume-methods",
        type=str_list,
        default=["supervised", "unimatch"],
        help="methods timed against the number of volumes",
    )
    p.add_argument("--train-volumes", type=int_list, default=[1, 2, 4], help="numbers of training volumes")
    p.add_argument("--volume-size", type=int, default=128, help="training size of the volume sweep")
    p.add_argument("--infer-size", type=int, default=128, help="the model's training size for inference")
    p.add_argument("--infer-slices", type=int_list, default=[10, 40, 160], help="slices per inferred volume")
    p.add_argument("--infer-volumes", type=int_list, default=[1, 2, 4], help="numbers of inferred volumes")
    p.add_argument("--infer-volume-slices", type=int, default=40, help="slices per volume of the volume sweep")
    p.add_argument("--data", help="the ACDC folder for the first-usable measurement (default: ../shared/data/acdc)")
    p.add_argument(
        "--usable-methods",
        type=str_list,
        help="methods of the first-usable measurement (default: every registered method; '' to skip)",
    )
    p.add_argument("--usable-case", default="patient002_frame01")
    p.add_argument("--usable-k", type=int, default=3)
    p.add_argument("--usable-iterations", type=int, default=200)
    p.add_argument("--usable-every", type=int, default=20)
    p.add_argument("--usable-size", type=int, default=128)
    p.add_argument("--usable-unlabeled", type=int, default=20, help="other ACDC train volumes used as unlabelled data")
    p.add_argument("--usable-fraction", type=float, default=0.9)
    p.add_argument("--usable-min", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument(
        "--paper-defaults", action="store_true", help="the methods' paper defaults instead of our short-budget recipe"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="bench-results/scaling.jsonl", help="JSONL results (written afresh)")


def main(args: argparse.Namespace) -> int:
    check_methods((args.methods or []) + (args.volume_methods or []) + (args.usable_methods or []))
    records = run(args)
    print()
    print(summary_tables(records))
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.exit(_child_main(sys.argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
