"""Running a prepared job: training with previews, the completion, the predictions, ``status.json`` and
the cleanup after a crash, a cancel or a full disk (:func:`run_job`)."""

from __future__ import annotations

import dataclasses
import errno
import json
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, Cancelled, CancelToken, InputError
from ..settings import to_dict
from .folder import RunLock, write_status
from .prepare import Prepared, PreparedVolume, check_checkpoint, prepare, setup_report
from .reading import Job, VolumesJob

if TYPE_CHECKING:  # torch is imported when a job runs, not when it is read and checked
    from ..training.distributed import World
    from ..training.progress import ProgressLog


def _no_space(err: BaseException, run_dir: Path) -> InputError | None:
    """The :class:`InputError` a full disk should have raised, if ``err`` (or its cause) is one."""
    seen: BaseException | None = err
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left" in str(seen):
            return InputError(f"no space left on {run_dir}; free some space and resume the run (--resume)")
        seen = seen.__cause__ or seen.__context__
    return None


def _remove_temp_files(run_dir: Path) -> None:
    """Remove what a failed or cancelled write left: ``*.tmp`` files and staged predictions."""
    for pattern in ("*.tmp", ".*.tmp", "predictions/*/.*.tmp.*"):
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)


def _finish(
    run_dir: Path, log: ProgressLog | None, state: str, message: str, exit_code: int, event: str | None = None
) -> None:
    """The last words of a run that did not finish: its ``error`` event, temporary files removed, its status.

    Each step is tried on its own, so that on a full disk the status is still written (see :func:`write_status`).
    """
    import sys

    steps = [lambda: log.emit("error", message=event)] if event and log is not None else []
    for step in steps + [lambda: _remove_temp_files(run_dir), lambda: write_status(run_dir, state, message, exit_code)]:
        try:
            step()
        except OSError as err:
            print(f"semiseg: could not record the {state} state in {run_dir}: {err}", file=sys.stderr)


def run_job(
    job: Job, resume: bool = False, log: ProgressLog | None = None, cancel: CancelToken | None = None
) -> dict[str, Any]:
    """Train and (optionally) predict as ``job`` says; returns a summary.

    The run folder is locked (:class:`RunLock`) for the whole run. A cancel (``cancel``, SIGTERM
    through it, or ``RUN_DIR/cancel``) is obeyed in every phase: set-up, training (a checkpoint is
    saved) and prediction.

    Under torchrun (``WORLD_SIZE`` > 1 in the environment, :mod:`semiseg.training.distributed`) every process
    runs this: rank 0 takes the lock and alone writes the run folder (``config.json``, ``status.json``,
    progress, checkpoints, previews, predictions); the other ranks train their share of each step and write
    nothing. A rank that dies makes the others fail within the collective timeout; rank 0 then marks the
    run failed, keeping the last good checkpoint.

    Raises:
        InputError: bad input (nothing is written), a run folder that cannot be written or is in use,
            or a full disk (the last good checkpoint is kept, temporary files are removed).
        Cancelled: cancellation; ``status.json`` says so and the last good checkpoint is kept.
    """
    from ..training.distributed import world_from_env

    prepared = prepare(job)
    run_dir = Path(job.run_dir)
    if resume and (run_dir / "checkpoint.pt").exists():
        check_checkpoint(run_dir / "checkpoint.pt", prepared.num_classes, job.method)
    cancel = cancel or CancelToken(run_dir / "cancel")
    world = world_from_env()
    if world.distributed:
        return _run_distributed(job, prepared, run_dir, resume, log, cancel, world)
    with RunLock(run_dir):
        return _run_locked(job, prepared, run_dir, resume, log, cancel)


def _run_distributed(
    job: Job | VolumesJob, prepared: Prepared, run_dir: Path, resume: bool, log: ProgressLog | None,
    cancel: CancelToken, world: World
) -> dict[str, Any]:
    """One rank of a torchrun run: join the process group, rank 0 locks the folder, every rank trains."""
    from ..training.distributed import any_rank, close_world, init_world

    init_world(world, prepared.config.device, prepared.config.dist_timeout)
    ok = False
    try:
        lock, problem = None, None
        if world.main:
            try:
                lock = RunLock(run_dir).acquire()
                (run_dir / "cancel").unlink(missing_ok=True)  # before the other ranks may look for it
            except InputError as err:
                problem = err
        if any_rank(problem is not None, world):  # no rank trains when rank 0 could not take the folder
            raise problem or InputError("rank 0 could not take the run folder (its message says why)", run_dir)
        try:
            summary = _run_locked(job, prepared, run_dir, resume, log, cancel, world)
            ok = True
            return summary
        except Cancelled:
            ok = True  # every rank stopped at the same iteration (any_rank): they can leave together
            raise
        except BaseException:
            if not world.main:
                _speak_for_a_dead_rank_0(run_dir)
            raise
        finally:
            if lock is not None:
                lock.release()
    finally:
        close_world(barrier=ok)


def _speak_for_a_dead_rank_0(run_dir: Path, seconds: float = 5.0) -> None:
    """Another rank's last words for rank 0 when it died without a word (killed, out of memory): rank 0 held the
    run folder's lock for the whole run and writes its final status before it lets go, so a free lock under a
    ``running`` status means it is gone; the status then says so (failed, the last checkpoint intact).

    Its sockets may close a moment before the system frees its lock, so the lock is tried for ``seconds``.
    Nothing is written while rank 0 lives (it reports its own failure), or when the folder is not shared
    with this machine's rank 0 (another node, a folder that is not on a shared disk: the lock is then free
    but no status was ever written there)."""
    if not (run_dir / "status.json").is_file():
        return  # a folder rank 0 never wrote (not shared with it): nothing to speak for, and nothing to create
    end = time.monotonic() + seconds
    while True:
        try:
            lock = RunLock(run_dir).acquire()
            break
        except InputError:
            if time.monotonic() > end:
                return
            time.sleep(0.2)
    try:
        try:
            state = json.loads((run_dir / "status.json").read_text()).get("state")
        except (OSError, ValueError):
            return
        if state == "running":
            _finish(run_dir, None, "failed", "rank 0 ended without a word (killed, or out of memory?); the last "
                    "checkpoint is kept, --resume goes on from it", EXIT_INTERNAL)
    finally:
        lock.release()


def _run_locked(
    job: Job | VolumesJob, prepared: Prepared, run_dir: Path, resume: bool, log: ProgressLog | None,
    cancel: CancelToken, world: World | None = None
) -> dict[str, Any]:
    from ..training.distributed import World
    from ..training.progress import ProgressLog

    world = world or World()
    if not world.main:
        return _run_other_rank(job, prepared, run_dir, resume, cancel, world)
    from ..completion.preview import Previews
    from ..inference import Predictor, write_prediction
    from ..training import Trainer

    (run_dir / "cancel").unlink(missing_ok=True)
    log = log or ProgressLog(run_dir / "progress.jsonl")
    several = isinstance(job, VolumesJob)  # format 2's volumes: its events and records say which volume
    try:
        write_status(run_dir, "running")
        meta: dict[str, Any] = {
            "axis": prepared.axis,
            "class_names": prepared.class_names,
            "keep_largest_island": prepared.islands,
        }
        if several:
            meta["volumes"] = [
                {"name": v.name, "image": v.path, "axis": v.axis, "labeled_slices": v.labeled}
                for v in prepared.volumes if v.train
            ]
        else:
            meta.update(image=job.image, labeled_slices=prepared.labeled[0].labeled)
        _write_config(job, prepared, run_dir, world)
        log.emit("setup", **setup_report(prepared))
        if several:
            for v in prepared.volumes:
                log.emit("volume", **_volume_record(v))
        trainer = Trainer(
            prepared.config,
            job.method,
            prepared.method_options,
            prepared.num_classes,
            run_dir,
            meta=meta,
            log=log,
            cancel=cancel,
            world=world,
        )
        if resume and trainer.checkpoint_path.exists():
            trainer.resume(trainer.checkpoint_path)
        elif job.init_checkpoint:
            trainer.warm_start(job.init_checkpoint)
        on_step = None
        every = prepared.completion.preview_every
        previews = [
            Previews(run_dir, v.name, v.volume, v.prior, every, log, job.output_format, set(v.labeled))
            for v in prepared.volumes
            if v.prior is not None and v.volume is not None and every > 0
        ]
        if previews:
            for p in previews:  # each labelled volume's prior alone, before training
                p.first(prepared.config.iterations)
        refined = False  # then each prior follows the image: seconds of registration after the first preview
        for v in (v for v in prepared.volumes if v.prior is not None):
            _obey(cancel, log, "completing")
            refined = v.prior.refine() or refined
        if refined:
            _write_config(job, prepared, run_dir, world)
        if previews:
            turn = [0]

            def on_step(iteration: int, _: dict[str, Any]) -> None:
                # One volume's preview every `every` seconds, the labelled volumes in turn: a run with many
                # labelled volumes spends on previews what a run with one does.
                if time.monotonic() - max(p.last for p in previews) >= every and iteration < prepared.config.iterations:
                    p = previews[turn[0] % len(previews)]
                    turn[0] += 1
                    p.network(
                        trainer.model,
                        prepared.config.size,
                        prepared.num_classes,
                        trainer.device,
                        iteration,
                        prepared.config.iterations,
                    )

        summary = trainer.fit(prepared.data, on_step=on_step)
        if world.distributed:  # the other ranks are done: predict alone, without them waiting on a collective
            from ..training.distributed import close_world

            close_world()
        predictions = {}
        if job.predict:
            predictor = Predictor(trainer.checkpoint_path, prepared.config.device)
            predictor.model.register_forward_pre_hook(
                lambda *_: _obey(cancel, log, "predicting")
            )  # each batch of slices
            for number, v in enumerate(prepared.volumes, 1):
                _obey(cancel, log, "predicting")
                count = {"number": number, "of": len(prepared.volumes)} if several else {}
                if several:
                    log.emit("predicting", name=v.name, **count)
                out = write_prediction(
                    predictor, v.path, run_dir / "predictions" / v.name, v.axis, job.output_format, set(v.labeled),
                    v.prior,
                )
                predictions[v.name] = str(out)
                log.emit("predicted", name=v.name, dir=str(out.relative_to(run_dir)), **count)
        log.emit("done", iteration=summary["iteration"], seconds=summary["seconds"])
        write_status(run_dir, "done", exit_code=EXIT_OK)
        return {
            **summary,
            "run_dir": str(run_dir),
            "axis": prepared.axis,
            "predictions": predictions,
            "num_classes": prepared.num_classes,
        }
    except Cancelled as err:
        _finish(run_dir, log, "cancelled", str(err), EXIT_CANCELLED)
        raise
    except InputError as err:
        _finish(run_dir, log, "failed", str(err), EXIT_BAD_INPUT, str(err))
        raise
    except Exception as err:
        full = _no_space(err, run_dir)
        if full is not None:
            _finish(run_dir, log, "failed", str(full), EXIT_BAD_INPUT, str(full))
            raise full from None
        _finish(
            run_dir,
            log,
            "failed",
            f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=5)}",
            EXIT_INTERNAL,
            f"{type(err).__name__}: {err}",
        )
        raise
    finally:
        log.close()


def _run_other_rank(
    job: Job | VolumesJob, prepared: Prepared, run_dir: Path, resume: bool, cancel: CancelToken, world: World
) -> dict[str, Any]:
    """A rank other than 0 of a torchrun run: it trains its share of each step and writes nothing (no status,
    progress, checkpoint, preview or prediction: rank 0 does); its errors end the process, which makes
    rank 0's next collective fail."""
    from ..training import Trainer
    from ..training.distributed import close_world
    from ..training.progress import ProgressLog

    trainer = Trainer(
        prepared.config, job.method, prepared.method_options, prepared.num_classes, run_dir,
        log=ProgressLog(None, None, False), cancel=cancel, world=world,
    )
    if resume and trainer.checkpoint_path.exists():
        trainer.resume(trainer.checkpoint_path)
    elif job.init_checkpoint:
        trainer.warm_start(job.init_checkpoint)
    summary = trainer.fit(prepared.data)
    close_world()  # together with rank 0, which then goes on alone (predictions)
    return {**summary, "run_dir": str(run_dir), "axis": prepared.axis, "predictions": {},
            "num_classes": prepared.num_classes}


def _write_config(job: Job | VolumesJob, prepared: Prepared, run_dir: Path, world: World) -> None:
    """``config.json``: the job as given and as resolved (recipe, training, options, completion, each prior's fit)."""
    resolved: dict[str, Any] = {}
    if isinstance(job, VolumesJob):
        resolved["volumes_resolved"] = [
            {**_volume_record(v), "prior": v.prior.fit if v.prior else None} for v in prepared.volumes
        ]
    else:
        resolved["prior"] = prepared.prior.fit if prepared.prior else None
    if world.distributed:
        resolved["distributed"] = {
            "world_size": world.size,
            "batch_labeled_per_rank": prepared.config.batch_labeled,
            "batch_unlabeled_per_rank": prepared.config.batch_unlabeled,
            "global_batch_labeled": prepared.config.batch_labeled * world.size,
            "global_batch_unlabeled": prepared.config.batch_unlabeled * world.size,
            "lr": prepared.config.lr,
            "lr_scaled": False,
        }
    record = {
        **dataclasses.asdict(job),
        "axis_resolved": prepared.axis,
        "recipe_resolved": prepared.recipe,
        "train_resolved": to_dict(prepared.config),
        "method_options_resolved": prepared.method_options,
        "num_classes": prepared.num_classes,
        "completion_resolved": to_dict(prepared.completion),
        **resolved,
    }
    (run_dir / "config.json").write_text(json.dumps(record, indent=1))


def _volume_record(v: PreparedVolume) -> dict[str, Any]:
    """What a ``volume`` event says of one volume of a format-2 job (and ``config.json``'s ``volumes_resolved``, with
    its prior's fit)."""
    slices = v.volume.num_slices(v.axis) if v.volume is not None else v.slices
    return {
        "name": v.name,
        "place": v.place,
        "image": v.path,
        "axis": v.axis,
        "slices": slices,
        "labeled_slices": v.labeled,
        "train": v.train,
    }


def _obey(cancel: CancelToken, log: ProgressLog, phase: str) -> None:
    if cancel.requested():
        log.emit("cancelled", phase=phase)
        raise Cancelled(f"cancelled while {phase}")
