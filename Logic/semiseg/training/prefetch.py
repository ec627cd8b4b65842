"""A background thread that prepares the next training batches while the current step trains.

Sampling, the weak augmentation, the strong views and the CutMix boxes are data work that needs no
network (:meth:`~semiseg.methods.Method.prepare`). Done on the training thread they sit on the
optimiser's critical path; here one worker thread makes batch i + 1 while step i runs (PyTorch's
kernels release the GIL, so the two overlap on a second core, and at worst interleave on one).

Determinism: the worker alone draws from the data generator it is given, in iteration order, and
hands over with each batch the generator's state after it, so the same seed gives the same batches,
and a checkpoint stores the state after the last batch *used* (not the ones made ahead).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

__all__ = ["Prefetcher"]

_POLL = 0.05  # seconds between the worker's checks of the stop flag while the queue is full


class Prefetcher:
    """Calls ``make(i)`` for ``i = start, start + 1, ...`` in a daemon thread, ``depth`` results ahead.

    Use as a context manager, or call :meth:`close`: it stops and joins the thread, so none is left
    behind whether the run ends, is cancelled or fails. An exception in ``make`` is raised again by
    the :meth:`get` that would have returned its result.

    Args:
        make: builds the item of iteration ``i`` (called only from the worker thread).
        start: first iteration; ``stop`` (exclusive): no item is made from it on.
        depth: items made ahead (1: the next step's batch).
    """

    def __init__(
        self, make: Callable[[int], Any], start: int, stop: int, depth: int = 1, name: str = "semiseg-prefetch"
    ) -> None:
        self.next = start
        self._make, self._stop_at = make, stop
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(start,), name=name, daemon=True)
        self._thread.start()

    def _run(self, i: int) -> None:
        while i < self._stop_at and not self._stop.is_set():
            try:
                item: tuple[bool, Any] = (True, self._make(i))
            except BaseException as err:  # noqa: BLE001 - handed to the training thread, which raises it
                item = (False, err)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=_POLL)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return
            i += 1

    def get(self) -> Any:
        """The item of iteration :attr:`next` (waits for it); re-raises the worker's exception."""
        if self.next >= self._stop_at:
            raise IndexError(f"no item after iteration {self._stop_at - 1}")
        while True:
            try:
                ok, item = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the prefetch thread stopped") from None
        if not ok:
            raise item
        self.next += 1
        return item

    def close(self) -> None:
        """Stop the worker and wait for it (at most the time of one ``make``)."""
        self._stop.set()
        while True:  # unblock a pending put
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
