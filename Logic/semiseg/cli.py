"""The ``semiseg`` command line: train, predict, evaluate, demo.

Exit codes (:mod:`semiseg.contract`): 0 done, 1 internal error, 2 bad input (the message names the
file and the problem), 3 cancelled (SIGTERM or ``RUN_DIR/cancel``).

torch and MONAI are imported only once the arguments and the job are checked, so that ``--help``
and bad input answer at once.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import sys
from pathlib import Path

from .contract import DEFAULT_METHOD, ISLAND_CHOICES, METHOD_LABELS, class_names
from .errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, Cancelled, CancelToken, InputError
from .settings import key_value
from .training.recipes import RECIPES

__all__ = ["main"]


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated slice indices, got {text!r}") from None


def _axis(text: str) -> str | int:
    if text == "auto":
        return text
    if text in ("0", "1", "2"):
        return int(text)
    raise argparse.ArgumentTypeError(f"axis must be auto, 0, 1 or 2 (I, J, K), got {text!r}")


def _parser(with_bench: bool = True) -> argparse.ArgumentParser:
    """The argument parser; the benchmarks' own options (their modules import torch) only ``with_bench``."""
    METHODS = sorted(METHOD_LABELS)
    p = argparse.ArgumentParser(
        prog="semiseg", description="Semi-supervised 2D segmentation of volumes from a few labelled slices."
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on a scan with a few labelled slices, then predict every slice")
    t.add_argument("--job", help="a job folder holding job.json (docs/JOB_FORMAT.md); replaces the options below")
    t.add_argument("--image", help="the scan (NIfTI, NRRD, MHA or a DICOM series folder)")
    t.add_argument("--labels", help="label map on the scan's grid; slices with any label voxel count as labelled")
    t.add_argument(
        "--labeled-slices", type=_int_list, default=[], help="slices that count as labelled although empty, e.g. 3,7"
    )
    t.add_argument("--unlabeled", nargs="*", default=[], help="extra volumes used as unlabelled data")
    t.add_argument("--axis", type=_axis, default="auto", help="slicing axis: auto, or 0/1/2 = I/J/K")
    t.add_argument("--classes", help="comma-separated class names, background first")
    t.add_argument(
        "--method", default=DEFAULT_METHOD, choices=METHODS, help=f"semi-supervised method (default {DEFAULT_METHOD})"
    )
    t.add_argument(
        "--option",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method option (repeatable)",
    )
    t.add_argument(
        "--recipe",
        choices=RECIPES,
        default="auto",
        help="defaults for what is not given: 'cpu' (ours: 1000 it, 128 px, batch 4+4, lr 0.03, warm-up/ramp-up), "
        "'quick' (a first look in about a minute: 600 it at 96 px, else as cpu), "
        "'paper' (the papers' settings), 'auto' (cpu on a CPU, else paper)",
    )
    t.add_argument("--iterations", type=int, help="optimiser steps (papers: 30000)")
    t.add_argument("--size", type=int, help="training size in pixels (papers: 256)")
    t.add_argument("--batch-labeled", type=int)
    t.add_argument("--batch-unlabeled", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", choices=["sgd", "adamw"])
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    t.add_argument("--init-checkpoint", help="warm start from this checkpoint (retrain)")
    t.add_argument("--format", dest="output_format", choices=["nii.gz", "nrrd", "mha"], default="nii.gz")
    t.add_argument(
        "--no-completion",
        action="store_true",
        help="the network alone on the labelled image (default: fused with the interpolation of the labelled slices)",
    )
    t.add_argument("--preview-every", type=float, help="seconds between previews while training (default 10; 0: none)")
    t.add_argument(
        "--keep-largest-island",
        choices=ISLAND_CHOICES,
        default="auto",
        help="keep classes to their largest 3D island (Slicer's Islands effect): 'auto' (the classes that are one "
        "piece in your labels), 'all' or 'none'",
    )
    t.add_argument("--no-predict", action="store_true", help="train only")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    t.add_argument("--out", help="run folder (default with --job: JOB_DIR/run)")
    t.add_argument(
        "--allow-outside-run-dir",
        action="store_true",
        help="accept a job.json whose run_dir lies outside the job folder (absolute, or with ..)",
    )

    r = sub.add_parser("predict", help="write labels, confidence, entropy and review.json for a scan, or many")
    r.add_argument("--run", required=True, help="a run folder (or a checkpoint.pt)")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--image", help="one scan; its results go to OUT")
    which.add_argument(
        "--images",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="many scans, one model load: files, or folders (their .nii, .nii.gz, .nrrd, .mha, .mhd files by name); "
        "each scan's results go to OUT/<name>/; scans finished there by an earlier run are skipped",
    )
    r.add_argument("--out", required=True)
    r.add_argument("--axis", type=_axis, default="auto", help="default: the axis the run was trained along")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    r.add_argument("--format", dest="output_format", choices=["nii.gz", "nrrd", "mha"], default="nii.gz")
    r.add_argument(
        "--keep-largest-island",
        choices=ISLAND_CHOICES,
        default="auto",
        help="keep classes to their largest 3D island: 'auto' (the classes the run chose), 'all' or 'none'",
    )

    e = sub.add_parser("evaluate", help="Dice, Jaccard, HD95 and ASD per class, as JSON")
    e.add_argument("--pred", required=True)
    e.add_argument("--ref", required=True)
    e.add_argument("--slices", type=_int_list, help="score only these slices along --axis")
    e.add_argument("--axis", type=_axis, default=2)
    e.add_argument("--num-classes", type=int)

    d = sub.add_parser("demo", help="the main job on a sample that ships with the install (MNI152 template)")
    d.add_argument("--out", default="semiseg-demo", help="output folder")
    d.add_argument("--iterations", type=int, default=300)
    d.add_argument("--method", default="supervised", choices=METHODS)
    d.add_argument("--slices", type=int, default=3, help="labelled slices kept")

    b = sub.add_parser("bench", help="benchmarks (from a checkout: see benchmarks/ and docs/BENCHMARKS.md)")
    if with_bench:  # imported only for `semiseg bench ...`: the engine itself never needs them
        import semiseg_bench

        bsub = b.add_subparsers(dest="bench", required=True)
        for name, (module, text) in semiseg_bench.COMMANDS.items():
            module.add_arguments(bsub.add_parser(name, help=text))
    w = sub.add_parser("serve", help="the label-train-review workflow in a web browser (needs the web extra)")
    w.add_argument(
        "data", nargs="*", metavar="DATA", help="volumes to open: the first is segmented, others add unlabelled data"
    )
    w.add_argument("--host", default="127.0.0.1", help="address to listen on; any but loopback needs an access token")
    w.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    w.add_argument("--token", help="access token (visible to other users of this machine: prefer the two below)")
    w.add_argument("--token-file", help="read the access token from the first line of this file")
    w.add_argument("--generate-token", action="store_true", help="make a token for this run and print it")
    w.add_argument("--segments", default="Segment 1", help="comma-separated segment names of new labels")
    w.add_argument("--cache-dir", help="where job folders go (default ~/.cache/semiseg/web)")
    w.add_argument("--out", default="semiseg-labels", help="where 'Save labels' writes")
    return p


def _serve(args: argparse.Namespace) -> int:
    """The web front end (``semiseg_web``, on trame-slicer), imported only here: the engine never needs trame."""
    try:
        import trame_slicer  # noqa: F401

        from semiseg_web.app import serve
    except ImportError as err:
        raise InputError(f"semiseg serve needs the web extra ({err}): pip install -e '.[web]'") from None
    return serve(args)


def _train(args: argparse.Namespace) -> int:
    from .job import Job, load_job, run_job

    cancel = CancelToken()  # SIGTERM is obeyed from here on, also while torch loads and the data are read
    signal.signal(signal.SIGTERM, cancel.set)
    if args.job:
        job = load_job(args.job, allow_outside_run_dir=args.allow_outside_run_dir)
        if args.out:
            job.run_dir = str(Path(args.out).resolve())
    else:
        if not (args.image and args.labels and args.out):
            raise InputError("train needs --job JOB_DIR, or --image, --labels and --out")
        train = {
            k: v
            for k, v in (
                ("iterations", args.iterations),
                ("size", args.size),
                ("batch_labeled", args.batch_labeled),
                ("batch_unlabeled", args.batch_unlabeled),
                ("lr", args.lr),
                ("optimizer", args.optimizer),
                ("seed", args.seed),
                ("device", args.device),
            )
            if v is not None
        }
        job = Job(
            image=args.image,
            labels=args.labels,
            unlabeled=list(args.unlabeled),
            labeled_slices=args.labeled_slices,
            axis=args.axis,
            classes=args.classes.split(",") if args.classes else None,
            method=args.method,
            recipe=args.recipe,
            train=train,
            method_options=dict(args.option),
            init_checkpoint=args.init_checkpoint,
            run_dir=str(Path(args.out).resolve()),
            predict=not args.no_predict,
            output_format=args.output_format,
            keep_largest_island=ISLAND_CHOICES[args.keep_largest_island],
            completion={
                k: v
                for k, v in (("enabled", False if args.no_completion else None), ("preview_every", args.preview_every))
                if v is not None
            },
        )
        job.check("command line")
    cancel.cancel_file = Path(job.run_dir) / "cancel"
    run_job(job, resume=args.resume, cancel=cancel)
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from .inference import Predictor, image_paths, predict_many, summary_table, write_prediction
    from .training.progress import ProgressLog

    images = image_paths(args.images) if args.images else None  # a missing input is refused before the model loads
    cancel = CancelToken()
    if images is not None:  # --image keeps today's behaviour: SIGTERM ends it
        signal.signal(signal.SIGTERM, cancel.set)
    ckpt = Path(args.run)
    ckpt = ckpt / "checkpoint.pt" if ckpt.is_dir() else ckpt
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder; --out names the folder the predictions go to", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot make the output folder ({err.strerror or err})", out) from None
    if images is not None and args.device in ("auto", "cuda"):
        from .inference.sharded import use_local_gpu
        from .training.distributed import world_from_env

        world = world_from_env()
        if world.distributed:  # under torchrun: one GPU per process of the machine, when there are GPUs
            use_local_gpu(world)
    try:
        predictor = Predictor(ckpt, args.device)
    except InputError:
        raise
    except (KeyError, RuntimeError, TypeError, ValueError) as err:  # a checkpoint edited to another model
        raise InputError(
            f"checkpoint does not hold a usable model ({type(err).__name__}: {str(err)[:200]})", ckpt
        ) from None
    axis = None if args.axis == "auto" else args.axis
    from .inference.islands import resolve_islands

    names = class_names(predictor.meta.get("class_names"), predictor.num_classes)
    # auto: the classes of the run (the checkpoint's)
    predictor.islands = resolve_islands(ISLAND_CHOICES[args.keep_largest_island], names, predictor.islands)
    if images is not None:
        from .training.distributed import world_from_env

        log = ProgressLog(None, stream=sys.stdout, bar=False)
        world = world_from_env()
        if world.distributed:  # under torchrun: this rank's share of the volumes (docs/SCALE.md)
            return _predict_shard(world, predictor, images, out, axis, args.output_format, log, cancel)
        summary = predict_many(predictor, images, out, axis, args.output_format, log=log, cancel=cancel)
        print(summary_table(summary))
        return EXIT_OK
    out = write_prediction(predictor, args.image, args.out, axis, args.output_format)
    print(json.dumps({"event": "predicted", "dir": str(out)}))
    return EXIT_OK


def _predict_shard(world, predictor, images, out, axis, output_format, log, cancel) -> int:
    """One rank of ``torchrun ... -m semiseg predict --images``: its volumes, then rank 0 prints the one summary.

    Every rank reports to rank 0 whether it failed or not (an error is caught, reported, then its exit code
    returned), so rank 0 never waits for a rank that stopped; it says which ranks failed and exits non-zero.
    """
    from .inference import predict_many, summary_table
    from .inference.sharded import barrier, close_group, gather_results, init_group, merge_summaries, rank_threads

    init_group(world)
    try:
        barrier()  # the ranks measure the others' load together, so that they do not count each other
        threads = rank_threads(0, world)
        result: object
        try:
            result = predict_many(predictor, images, out, axis, output_format, log=log, cancel=cancel,
                                  threads=threads, shard=(world.rank, world.size))
            code = EXIT_OK
        except InputError as err:
            result, code = (EXIT_BAD_INPUT, f"semiseg: error: {err}"), EXIT_BAD_INPUT
        except (Cancelled, KeyboardInterrupt) as err:
            result, code = (EXIT_CANCELLED, f"semiseg: {err or 'interrupted'}"), EXIT_CANCELLED
        except Exception as err:  # noqa: BLE001 - reported to rank 0, then the exit code says "internal error"
            import traceback

            traceback.print_exc()
            result, code = (EXIT_INTERNAL, f"internal error: {type(err).__name__}: {err}"), EXIT_INTERNAL
        if code != EXIT_OK:
            print(f"rank {world.rank}: {result[1]}", file=sys.stderr, flush=True)
        try:
            gathered = gather_results(result, world)
        except Exception as err:  # noqa: BLE001 - a rank gone or the timeout: say so rather than hang
            print(f"semiseg: error: rank {world.rank} could not collect the ranks' results ({type(err).__name__}: "
                  f"{str(err)[:300]}); the finished volumes are kept, a rerun skips them", file=sys.stderr, flush=True)
            return code or EXIT_INTERNAL
        if gathered is None:  # not rank 0: its events are printed, rank 0 prints the summary
            return code
        failed = [(r, part) for r, part in enumerate(gathered) if isinstance(part, tuple)]
        if failed:
            for r, (_, message) in failed:
                print(f"semiseg: rank {r} of {world.size} failed: {message}", file=sys.stderr)
            print(f"semiseg: {len(failed)} of {world.size} rank(s) failed; the volumes finished are kept, a rerun "
                  "skips them", file=sys.stderr, flush=True)
            return failed[0][1][0]
        sys.stdout.flush()
        print(summary_table(merge_summaries(gathered, [str(p) for p in images])), flush=True)
        return EXIT_OK
    finally:
        close_group()


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .inference.metrics import evaluate_volume, to_jsonable
    from .io.images import check_same_geometry, read_labels
    from .io.slices import take_slices

    pred, pred_img = read_labels(args.pred)
    ref, ref_img = read_labels(args.ref)
    check_same_geometry(ref_img, pred_img, args.pred)
    spacing = tuple(reversed(ref_img.GetSpacing()))
    axis = 2 if args.axis == "auto" else args.axis
    if args.slices:
        n = pred.shape[2 - axis]
        bad = [s for s in args.slices if not 0 <= s < n]
        if bad:
            raise InputError(f"slice(s) {bad} outside 0..{n - 1} along axis {axis}", args.ref)
        pred = np.moveaxis(take_slices(pred, axis, args.slices), 0, 2 - axis)
        ref = np.moveaxis(take_slices(ref, axis, args.slices), 0, 2 - axis)
    num_classes = args.num_classes or int(max(pred.max(), ref.max())) + 1
    result = evaluate_volume(pred, ref, max(2, num_classes), spacing)
    result["spacing"] = list(ref_img.GetSpacing())  # printed in IJK order, as everywhere else (computed in KJI)
    print(json.dumps(to_jsonable(result), indent=1))
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    import semiseg_bench

    return semiseg_bench.COMMANDS[args.bench][0].main(args)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    with_bench = bool(argv) and argv[0] == "bench"
    if with_bench and importlib.util.find_spec("semiseg_bench") is None:
        print("error: the benchmarks are not installed with this engine; run them from a checkout of the repository "
              "(pip install -e \".[bench]\", see docs/BENCHMARKS.md)", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = _parser(with_bench=with_bench).parse_args(argv)
    handlers = {"train": _train, "predict": _predict, "evaluate": _evaluate, "bench": _bench, "serve": _serve}
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(args.out, args.iterations, args.method, args.slices)
            return EXIT_OK
        return handlers[args.command](args)
    except InputError as err:
        print(f"semiseg: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Cancelled as err:
        print(f"semiseg: {err}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("semiseg: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception:  # noqa: BLE001 - the exit code must say "internal error"
        import traceback

        traceback.print_exc()
        return EXIT_INTERNAL
