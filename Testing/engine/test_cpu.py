"""How many threads a training takes (semiseg.training.cpu): the cores other processes leave free, unless the user
fixed the count; a thread that waits for a descheduled one only wastes its core."""

from __future__ import annotations

import os

import pytest


# -- how many threads a training takes ----------------------------------------------------------
def test_training_takes_the_cores_others_leave_free_unless_the_user_fixed_the_count():
    from semiseg.training.cpu import training_threads

    cores = os.cpu_count() or 1
    assert training_threads(3, 2, environ={}, busy=cores) == 3  # the job's own count wins
    assert training_threads(0, 2, environ={"OMP_NUM_THREADS": "2"}, busy=cores) == 2  # so does the user's environment
    assert training_threads(0, cores, environ={}, busy=0.0) == cores  # idle: one per core
    assert training_threads(0, cores, environ={}, busy=cores - 0.8) == 1  # all but one core busy: one thread
    assert training_threads(0, cores, environ={}, busy=float(cores)) == 1  # never zero
    assert training_threads(0, cores, environ={}, busy=0.4) == cores  # a little load is rounded away


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads the CPU counters of /proc (Linux)")
def test_busy_cores_count_other_processes_not_this_one():
    import threading

    from semiseg.training.cpu import others_busy_cores
    from semiseg_bench.contention import busy_neighbours

    with busy_neighbours(1, settle=0.2):
        with_neighbour = others_busy_cores(0.5)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        own_spin = others_busy_cores(0.5)  # this process keeps a core busy: not counted
    finally:
        stop.set()
        spinner.join()
    assert with_neighbour > 0.6, with_neighbour
    assert own_spin < with_neighbour - 0.4, (own_spin, with_neighbour)


def test_a_trainer_without_a_thread_count_leaves_the_busy_cores_to_others(tmp_path, monkeypatch):
    import json

    import torch

    from semiseg.training import Trainer, cpu
    from semiseg.training.config import TrainConfig
    from semiseg.training.progress import ProgressLog

    cores = os.cpu_count() or 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "others_busy_cores", lambda seconds=0.25: cores - 1.0)
    before = torch.get_num_threads()
    try:
        cfg = TrainConfig(iterations=1, size=32, batch_labeled=1, batch_unlabeled=0, val_every=0, device="cpu")
        trainer = Trainer(cfg, "supervised", {}, 2, tmp_path, log=ProgressLog(tmp_path / "progress.jsonl", stream=None))
        assert trainer.threads == torch.get_num_threads() == 1
        fixed = Trainer(
            TrainConfig(iterations=1, size=32, val_every=0, device="cpu", threads=2),
            "supervised",
            {},
            2,
            tmp_path / "b",
            log=ProgressLog(None, stream=None),
        )
        assert fixed.threads == 2  # a job that sets its count gets it, busy or not
        from semiseg.io.slices import SliceSet
        from semiseg.training import TrainData

        x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
        empty = SliceSet(torch.zeros(0, 1, 32, 32), torch.zeros(0, 32, 32, dtype=torch.long), [])
        trainer.fit(TrainData(SliceSet(x, y, [("t", 0), ("t", 1)]), empty, SliceSet(x.clone(), None, []), 2))
        start = json.loads((tmp_path / "progress.jsonl").read_text().splitlines()[0])
        assert start["event"] == "start" and start["threads"] == 1  # the count is in the progress log
    finally:
        torch.set_num_threads(before)
