"""``torchrun --nproc-per-node N -m semiseg predict --images ...`` (issue 15, item 2): the volumes shared out over the
ranks, each done once, the same bytes as one process, resumable, one summary (rank 0's), a failing rank reported.

Runs real torchrun (``python -m torch.distributed.run``) with 2 processes of one thread each over real LA scans of
../shared/data (linked under new names into temporary folders), the checkpoint the tiny one of test_predict_many.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_predict_many import checkpoint, events, files_of, la_images, linked, stamps  # noqa: F401 - the fixture

from semiseg.inference.many import ManySummary, VolumeSummary, finished, summary_table
from semiseg.inference.sharded import merge_summaries, rank_threads, shard
from semiseg.training.distributed import World, world_from_env

NAMES = [f"v{i}" for i in range(6)]


def six_volumes(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    linked(folder, la_images(len(NAMES)), [f"{n}.nii.gz" for n in NAMES])
    return folder


def torchrun(*args: object, nproc: int = 2, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
         "-m", "semiseg", "--", *map(str, args)],  # "--": torchrun would take --run for its --run-path
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def single(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semiseg", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by them (torchrun starts its workers in sessions of their own)."""
    found = []
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return found
    for child in children:
        found += [child, *descendants(child)]
    return found


def table_of(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if not line.startswith("{")]


# -- the rules, in this process ---------------------------------------------------------------------------------------
def test_rank_r_takes_the_indices_congruent_to_r():
    items = list("abcdefg")
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts[0] == [(0, "a"), (3, "d"), (6, "g")] and parts[2] == [(2, "c"), (5, "f")]
    assert sorted(i for part in parts for i, _ in part) == list(range(len(items)))  # each once
    for one in ({}, {"WORLD_SIZE": "1", "RANK": "0"}, {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "x"}):
        assert not world_from_env(one).distributed, one
    assert world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}) == World(
        4, 3, 1, 2)


def test_each_rank_takes_its_share_of_the_free_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("semiseg.inference.sharded.torch_default_threads", lambda: 16)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert rank_threads(0, World(2, 0, 0, 2), busy=0.0) == 7  # 8 cores each, one of them for reader and writer
    assert rank_threads(0, World(4, 0, 0, 4), busy=4.0) == 2  # 12 free cores over 4 ranks
    assert rank_threads(0, World(8, 0, 0, 8), busy=15.0) == 1
    assert rank_threads(3, World(2, 0, 0, 2), busy=0.0) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert rank_threads(0, World(2, 0, 0, 2), busy=0.0) == 16  # OMP_NUM_THREADS: torch's own count


def test_the_summaries_of_the_ranks_merge_in_the_input_order():
    def part(names: list[str], seconds: float) -> ManySummary:
        return ManySummary([VolumeSummary(n, f"/in/{n}", f"/out/{n}", "predicted", 4, 0.9, [(1, 0.5)], 1.0)
                            for n in names], seconds, 1)

    merged = merge_summaries([part(["a", "c"], 3.0), part(["b"], 5.0)], ["/in/a", "/in/b", "/in/c"])
    assert [v.name for v in merged.volumes] == ["a", "b", "c"] and merged.seconds == 5.0 and merged.processes == 2
    assert "3 volume(s): 3 predicted, 0 skipped" in summary_table(merged)
    assert summary_table(merged).splitlines()[-2].endswith("1 torch thread(s) in each of 2 processes")


# -- two ranks under torchrun -----------------------------------------------------------------------------------------
def test_two_ranks_give_the_bytes_of_one_process_each_volume_once_one_summary(checkpoint, tmp_path):  # noqa: F811
    folder = six_volumes(tmp_path)
    proc = torchrun("predict", "--run", checkpoint.parent, "--images", folder, "--out", tmp_path / "two")
    one = single("predict", "--run", checkpoint.parent, "--images", folder, "--out", tmp_path / "one")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert one.returncode == 0, one.stderr[-3000:]
    for name in NAMES:
        a, b = files_of(tmp_path / "one" / name), files_of(tmp_path / "two" / name)
        assert sorted(a) == sorted(b) and len(a) == 4
        for file in a:
            assert a[file].read_bytes() == b[file].read_bytes(), f"{name}/{file} differs"
    lines = events(stdout)
    predicted = [e for e in lines if e["event"] == "predicted"]
    assert sorted(e["name"] for e in predicted) == NAMES  # each volume once over both ranks
    assert all(e["rank"] == int(e["name"][1:]) % 2 and e["of"] == 6 for e in predicted)  # rank r: the indices r mod 2
    assert sorted(e["rank"] for e in lines if e["event"] == "done") == [0, 1]
    table = table_of(stdout)
    assert sum(line.startswith("volume ") for line in table) == 1, stdout  # one summary: rank 0's
    rows = {line.split()[0]: line.split()[1] for line in table[1:7]}
    assert rows == {n: "predicted" for n in NAMES}
    assert table[7].startswith("6 volume(s): 6 predicted, 0 skipped") and "in each of 2 processes" in table[7]


def test_a_killed_run_resumes_and_skips_the_finished_volumes(checkpoint, tmp_path):  # noqa: F811
    folder = six_volumes(tmp_path)
    out = tmp_path / "out"
    proc = torchrun("predict", "--run", checkpoint.parent, "--images", folder, "--out", out)
    seen = []
    try:
        for line in proc.stdout:
            if line.startswith("{"):
                seen.append(json.loads(line))
                if seen[-1]["event"] == "predicted":
                    break
        # as a crash or a scheduler would: torchrun and its workers (each in a session of its own) at once
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert any(e["event"] == "predicted" for e in seen), seen
    done = [n for n in NAMES if finished(out / n, folder / f"{n}.nii.gz", "nii.gz")]
    assert {e["name"] for e in seen if e["event"] == "predicted"} <= set(done)
    assert len(done) < len(NAMES), f"the kill came too late to leave work for the rerun: {done}"
    before = {n: stamps(out / n) for n in done}

    again = torchrun("predict", "--run", checkpoint.parent, "--images", folder, "--out", out)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-3000:]
    lines = events(stdout)
    assert sorted(e["name"] for e in lines if e["event"] == "skipped") == done
    assert sorted(e["name"] for e in lines if e["event"] == "predicted") == sorted(set(NAMES) - set(done))
    assert all(stamps(out / n) == before[n] for n in done)  # not rewritten
    assert all(finished(out / n, folder / f"{n}.nii.gz", "nii.gz") for n in NAMES)
    assert not list(out.glob("*/.*.tmp.*"))
    rows = {line.split()[0]: line.split()[1] for line in table_of(stdout)[1:7]}
    assert rows == {n: "skipped" if n in done else "predicted" for n in NAMES}


def test_a_failing_rank_fails_the_run_with_a_message_and_no_hang(checkpoint, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    linked(folder, la_images(3), ["v0.nii.gz", "v2.nii.gz", "v3.nii.gz"])
    (folder / "v1.nii.gz").write_bytes(b"this is no image")  # index 1: rank 1's
    start = time.perf_counter()
    proc = torchrun("predict", "--run", checkpoint.parent, "--images", folder, "--out", tmp_path / "out",
                    env={"SEMISEG_DIST_TIMEOUT": "120"})
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert time.perf_counter() - start < 240
    assert "semiseg: rank 1 of 2 failed: semiseg: error:" in stderr and str(folder / "v1.nii.gz") in stderr, stderr
    assert not any(line.startswith("volume ") for line in table_of(stdout))  # no summary of a failed run
    assert all(finished(tmp_path / "out" / n, folder / f"{n}.nii.gz", "nii.gz") for n in ("v0", "v2"))  # rank 0's


def test_a_hung_rank_fails_the_run_after_the_timeout(checkpoint, tmp_path):  # noqa: F811
    folder = six_volumes(tmp_path)
    proc = torchrun("predict", "--run", checkpoint.parent, "--images", folder, "--out", tmp_path / "out",
                    env={"SEMISEG_DIST_TIMEOUT": "10"})
    stopped = None
    try:
        for line in proc.stdout:
            if line.startswith("{") and json.loads(line).get("rank") == 1:  # rank 1 has started: stop it there
                workers = descendants(proc.pid)
                stopped = next(pid for pid in workers
                               if b"\0RANK=1\0" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes())
                os.kill(stopped, signal.SIGSTOP)
                break
        start = time.perf_counter()
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
    assert stopped is not None
    assert proc.returncode != 0 and time.perf_counter() - start < 200
    assert "rank 0 could not collect the ranks' results" in stderr, stderr[-3000:]
    assert not any(line.startswith("volume ") for line in table_of(stdout))
    assert all(finished(tmp_path / "out" / n, folder / f"{n}.nii.gz", "nii.gz") for n in ("v0", "v2", "v4"))
