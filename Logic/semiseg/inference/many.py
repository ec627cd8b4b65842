"""Prediction of many volumes with one model load: ``semiseg predict --images A B DIR/ --out OUT``.

The choices made:

- Same results as one at a time. Each volume goes through the code of a single predict
  (:meth:`Predictor.probabilities` in the predictor's own batches of slices, :func:`outputs`,
  :func:`write_result`), into ``OUT/<volume name>/``: its files are byte-identical to those of
  ``semiseg predict --image X --out OUT/<volume name>``. Slices are not batched across volumes, whose
  batch boundaries would then depend on the neighbours.
- Three stages overlap: a reader thread reads and normalises the next volume, the calling thread runs
  the network, a writer thread computes labels, confidence and entropy and writes them. The queues
  between them hold one volume each, so at most five volumes are in memory (one in each stage and queue).
- Threads: the network gets the cores other processes leave free minus one, which the reader and the
  writer use (:mod:`semiseg.training.cpu`: a torch thread that shares its core with a busy one makes
  the others wait; on the loaded 2-core machine two threads ran 6 times slower than one).
  ``OMP_NUM_THREADS`` or ``threads`` fix the count. The count is set for the call and given back after.
- Resume: a volume is finished when its ``review.json`` exists (:func:`write_result` renames it into
  place last), with its three volumes, names the same image, axis and classes kept to their largest island
  (``--keep-largest-island``) and is not older than the checkpoint.
  Finished volumes are skipped (a ``skipped`` event), so an interrupted run continues where it stopped
  and a retrained checkpoint redoes everything.
- Stop: a cancel (the token, which SIGTERM sets) or Ctrl-C stops the network before its next batch;
  the writer finishes the volume it is writing (whole, or nothing: its files are renamed into place) and
  drops the queued one. A volume that cannot be read or written stops the run after the volumes before
  it are written. Either way both threads are joined before the call returns or raises.
- Shards: ``shard=(rank, world)`` keeps the volumes whose index in the input list is ``rank`` modulo
  ``world`` (torchrun's ranks, :mod:`semiseg.inference.sharded`); the events then carry the rank.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import Cancelled, CancelToken, InputError
from ..io.images import OUTPUT_FORMATS, read_image, volume_name
from ..io.slices import Volume, normalize_intensity
from ..training.cpu import torch_default_threads, training_threads
from ..training.progress import ProgressLog
from .predictor import Predictor, outputs, write_result

__all__ = ["IMAGE_SUFFIXES", "OUTPUT_NAMES", "image_paths", "finished", "predict_many", "compute_threads",
           "VolumeSummary", "ManySummary", "summary_table"]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
"""The files a folder of ``--images`` contributes (case-insensitive; hidden files and ``.seg.nrrd`` excluded)."""

OUTPUT_NAMES = ("labels", "confidence", "entropy")
"""The volumes :func:`outputs` makes; with ``review.json`` the files of a finished volume."""

LEAST_CONFIDENT = 3
"""Slices of each volume's review list shown in the summary table."""

_POLL = 0.1  # seconds between two looks at the cancel token and the other threads while waiting on a queue


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return (
        not name.startswith(".") and name.endswith(IMAGE_SUFFIXES) and not name.endswith(".seg.nrrd") and path.is_file()
    )


def image_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The volumes of ``inputs``: files as given, folders replaced by their image files sorted by name.

    Raises:
        InputError: a missing input, a folder that cannot be listed or holds no image, two volumes with
            one name (their results would share ``OUT/<name>/``).
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            try:
                found = sorted((p for p in path.iterdir() if _is_image_file(p)), key=lambda p: p.name)
            except OSError as err:
                raise InputError(f"cannot be read ({err.strerror or err})", path) from None
            if not found:
                raise InputError(f"folder holds no image ({', '.join(IMAGE_SUFFIXES)})", path)
            paths += found
        elif path.exists():
            paths.append(path)
        else:
            raise InputError("file not found", path)
    seen: dict[str, Path] = {}
    for path in paths:
        name = volume_name(path)
        if name in seen:
            raise InputError(
                f"two inputs have the volume name {name!r}: {seen[name]} and {path}; their results would both go "
                f"to OUT/{name}/ (rename one, or predict them into two --out folders)"
            )
        seen[name] = path
    return paths


def finished(
    out_dir: str | os.PathLike, image: str | os.PathLike, output_format: str, not_before: float = 0.0,
    axis: int | None = None, islands: Sequence[int] | None = None,
) -> bool:
    """Whether ``out_dir`` holds a whole result of ``image`` (sliced along ``axis``, and with ``islands`` kept to
    their largest island, if given) written at ``not_before`` (a time stamp) or later."""
    out_dir = Path(out_dir)
    review = out_dir / "review.json"
    try:
        if review.stat().st_mtime < not_before:
            return False
        if any((out_dir / f"{key}.{output_format}").stat().st_size == 0 for key in OUTPUT_NAMES):
            return False
        content = json.loads(review.read_text())
        recorded, slices = content["image"], content["slices"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if axis is not None and content.get("axis") != axis:
        return False
    if islands is not None and content.get("keep_largest_island", []) != sorted(int(c) for c in islands):
        return False
    return isinstance(slices, list) and bool(recorded) and os.path.abspath(recorded) == os.path.abspath(image)


def compute_threads(requested: int = 0) -> int:
    """The torch threads of the network: ``requested``, else (``OMP_NUM_THREADS`` unset) the free cores minus one."""
    if requested > 0:
        return requested
    default = torch_default_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        return default
    return max(1, training_threads(0, default) - 1)


@dataclasses.dataclass
class VolumeSummary:
    """One volume of the summary: where its result is and its review list's mean and least confident slices."""

    name: str
    image: str
    dir: str
    state: str  # "predicted" or "skipped"
    slices: int
    mean_confidence: float  # the mean of the review list's per-slice statistic (semiseg.inference.review)
    least_confident: list[tuple[int, float]]  # (slice index, its confidence), least confident first
    seconds: float = 0.0  # the network's time on this volume (0 when skipped)


@dataclasses.dataclass
class ManySummary:
    """What :func:`predict_many` did: each volume in the order given, the seconds of the call, the torch threads
    (of each process, when ``processes`` shared the volumes out)."""

    volumes: list[VolumeSummary]
    seconds: float
    threads: int
    processes: int = 1

    @property
    def predicted(self) -> int:
        return sum(v.state == "predicted" for v in self.volumes)

    @property
    def skipped(self) -> int:
        return sum(v.state == "skipped" for v in self.volumes)

    @property
    def volumes_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0


def _summary(name: str, image: Path, out_dir: Path, state: str, seconds: float = 0.0) -> VolumeSummary:
    slices = json.loads((out_dir / "review.json").read_text())["slices"]
    mean = sum(s["confidence"] for s in slices) / len(slices) if slices else 1.0
    least = [(int(s["index"]), float(s["confidence"])) for s in slices[:LEAST_CONFIDENT]]
    return VolumeSummary(name, str(image), str(out_dir), state, len(slices), mean, least, seconds)


class _Shared:
    """What the three threads share: the stop flag, the first failure of a thread, the progress log's lock."""

    def __init__(self, log: ProgressLog, cancel: CancelToken, extra: dict[str, Any] | None = None) -> None:
        self.log, self.cancel, self.extra = log, cancel, extra or {}
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        with self._lock:
            self.log.emit(event, **fields, **self.extra)

    def fail(self, err: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = err
        self.stop.set()

    def check(self, *_: Any) -> None:
        """Raise the cancel or another thread's failure (in the calling thread, between two batches)."""
        if self.cancel.requested():
            raise Cancelled("cancelled while predicting")
        if self.failure is not None:
            raise self.failure

    def put(self, q: queue.Queue, item: Any, check: Callable[[], None]) -> bool:
        """Put ``item`` on ``q``, calling ``check`` while it is full; False when stopped first."""
        while not self.stop.is_set():
            check()
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False


def _remove_temporary(out_dir: Path) -> None:
    for tmp in out_dir.glob(".*.tmp.*"):  # write_result's staged files of an interrupted write
        tmp.unlink(missing_ok=True)


def _reader(todo: list[tuple[int, str, Path, Path]], to_network: queue.Queue, shared: _Shared) -> None:
    """Read and normalise each volume of ``todo`` in turn; a failure is handed on in its place, and ends it."""
    for index, name, image, out_dir in todo:
        if shared.stop.is_set():
            return
        try:
            array, reference = read_image(image)
            item: Any = (index, name, image, out_dir, Volume(name, normalize_intensity(array), reference,
                                                               path=str(image)))
        except BaseException as err:  # noqa: BLE001 - handed to the network's thread, which raises it
            item = err
        if not shared.put(to_network, item, lambda: None) or isinstance(item, BaseException):
            return


def _writer(
    to_disk: queue.Queue, shared: _Shared, axis: int, output_format: str, total: int, done: list[VolumeSummary],
    islands: list[int],
) -> None:
    """Write each result the network hands over, until ``None`` or the stop flag."""
    while not shared.stop.is_set():
        try:
            item = to_disk.get(timeout=_POLL)
        except queue.Empty:
            continue
        if item is None:
            return
        index, name, image, out_dir, probs, reference, seconds = item
        try:
            if out_dir.is_dir():
                _remove_temporary(out_dir)
            write_result(outputs(probs, islands, axis), reference, out_dir, axis, output_format, None, str(image))
            done.append(_summary(name, image, out_dir, "predicted", seconds))
            shared.emit("predicted", name=name, dir=str(out_dir), number=index + 1, of=total, seconds=seconds)
        except BaseException as err:  # noqa: BLE001 - the network's thread raises it
            if out_dir.is_dir():
                _remove_temporary(out_dir)
            if isinstance(err, OSError):
                err = InputError(f"cannot be written ({err.strerror or err})", out_dir)
            shared.fail(err)
            return


def _join(*threads: threading.Thread) -> None:
    for thread in threads:
        while thread.is_alive():
            thread.join(_POLL)


def predict_many(
    predictor: Predictor,
    images: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    axis: int | None = None,
    output_format: str = "nii.gz",
    log: ProgressLog | None = None,
    cancel: CancelToken | None = None,
    threads: int = 0,
    shard: tuple[int, int] | None = None,
) -> ManySummary:
    """Predict every volume of ``images`` (files, or folders: :func:`image_paths`) into ``out/<volume name>/``.

    Volumes already finished there (:func:`finished`) are skipped. One progress event per volume
    (``predicted`` or ``skipped``), then ``done``; ``cancelled`` or ``error`` when it stops early. With
    ``shard=(rank, world)`` only the volumes whose index in the list is ``rank`` modulo ``world`` (the
    inputs are checked whole all the same); the events carry ``rank``, ``number`` and ``of`` count the whole list.

    Raises:
        InputError: a missing input, two volumes with one name, a volume that cannot be read or written (the
            volumes before it are finished).
        Cancelled: ``cancel`` was set (the finished volumes are kept).
    """
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"output format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    start = time.perf_counter()
    paths = image_paths(images)
    out = Path(out)
    axis = predictor.axis if axis is None else axis
    checkpoint = predictor.checkpoint
    not_before = checkpoint.stat().st_mtime if checkpoint is not None and checkpoint.exists() else 0.0
    shared = _Shared(log or ProgressLog(None), cancel or CancelToken(), {} if shard is None else {"rank": shard[0]})
    done: list[VolumeSummary] = []
    todo = []
    mine = [(i, p) for i, p in enumerate(paths) if shard is None or i % shard[1] == shard[0]]
    for index, image in mine:
        name = volume_name(image)
        out_dir = out / name
        if finished(out_dir, image, output_format, not_before, axis, predictor.islands):
            done.append(_summary(name, image, out_dir, "skipped"))
            shared.emit("skipped", name=name, dir=str(out_dir), number=index + 1, of=len(paths),
                        reason="finished by an earlier run")
        else:
            todo.append((index, name, image, out_dir))

    count = compute_threads(threads)
    to_network: queue.Queue = queue.Queue(maxsize=1)
    to_disk: queue.Queue = queue.Queue(maxsize=1)
    reader = threading.Thread(target=_reader, args=(todo, to_network, shared), name="semiseg-predict-reader")
    writer = threading.Thread(
        target=_writer,
        args=(to_disk, shared, axis, output_format, len(paths), done, list(predictor.islands)),
        name="semiseg-predict-writer",
    )
    previous = torch.get_num_threads()
    hook = predictor.model.register_forward_pre_hook(shared.check)  # a cancel is obeyed between two batches
    try:
        torch.set_num_threads(count)
        reader.start()
        writer.start()
        for _ in todo:
            while True:
                shared.check()
                try:
                    item = to_network.get(timeout=_POLL)
                    break
                except queue.Empty:
                    continue
            if isinstance(item, BaseException):  # the writer first finishes the volumes before this one
                shared.put(to_disk, None, shared.check)
                _join(writer)
                shared.check()
                raise item
            index, name, image, out_dir, volume = item
            began = time.perf_counter()
            probs = predictor.probabilities(volume.image, axis)
            seconds = time.perf_counter() - began
            shared.put(to_disk, (index, name, image, out_dir, probs, volume.reference, seconds), shared.check)
        shared.put(to_disk, None, shared.check)
        _join(writer)
        shared.check()
    except (Cancelled, KeyboardInterrupt):
        shared.stop.set()
        _join(reader, writer)  # the writer's last "predicted" comes before
        shared.emit("cancelled", phase="predicting", finished=len(done))
        raise
    except InputError as err:
        shared.stop.set()
        _join(reader, writer)
        shared.emit("error", message=str(err), finished=len(done))
        raise
    finally:
        shared.stop.set()
        hook.remove()
        torch.set_num_threads(previous)
        _join(reader, writer)
    order = {str(p): i for i, p in enumerate(paths)}
    summary = ManySummary(sorted(done, key=lambda v: order[v.image]), time.perf_counter() - start, count)
    shared.emit("done", volumes=len(mine), predicted=summary.predicted, skipped=summary.skipped,
                seconds=summary.seconds, volumes_per_second=summary.volumes_per_second, threads=count)
    return summary


def summary_table(summary: ManySummary) -> str:
    """The table ``semiseg predict --images`` prints at the end: one row per volume, then the totals."""
    width = max([len("volume")] + [len(v.name) for v in summary.volumes])
    rows = [
        f"{'volume':<{width}}  {'state':<9}  slices  mean confidence  least confident slices (index: confidence)"
    ]
    for v in summary.volumes:
        least = ", ".join(f"{i}: {c:.3f}" for i, c in v.least_confident)
        rows.append(f"{v.name:<{width}}  {v.state:<9}  {v.slices:>6}  {v.mean_confidence:>15.3f}  {least}")
    rows.append(
        f"{len(summary.volumes)} volume(s): {summary.predicted} predicted, {summary.skipped} skipped (finished "
        f"before) in {summary.seconds:.1f} s: {summary.volumes_per_second:.2f} volumes/s, "
        + (f"{summary.seconds / summary.predicted:.2f} s/volume" if summary.predicted else "- s/volume")
        + f", {summary.threads} torch thread(s)"
        + (f" in each of {summary.processes} processes" if summary.processes > 1 else "")
    )
    rows.append("confidence: the review list's per-slice statistic (review.json), the mean over the volume's slices")
    return "\n".join(rows)
