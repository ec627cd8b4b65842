"""``semiseg predict --images`` (issue 12, item 2): many volumes, one model load, resumable, as one at a time.

The volumes are real LA scans of ../shared/data (linked into temporary folders, never copied into the repository),
the checkpoint a tiny one trained here with the engine's own :class:`Trainer`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from semiseg.cli import main
from semiseg.errors import Cancelled, CancelToken, InputError
from semiseg.inference import Predictor, image_paths, predict_many
from semiseg.inference.many import OUTPUT_NAMES, finished
from semiseg.training.progress import ProgressLog

from enginetesting import DATA

LA = DATA / "la"
SIZE = 32
FILES = [*OUTPUT_NAMES, "review"]


def la_images(count: int) -> list[Path]:
    paths = sorted((LA / "images").glob("*.nii.gz"))[:count]
    if len(paths) < count:
        pytest.fail(f"real LA data missing at {LA}: the tests need ../shared/data beside the checkout")
    return paths


def linked(folder: Path, sources: list[Path], names: list[str] | None = None) -> list[Path]:
    """Symbolic links to ``sources`` in ``folder`` (named ``names``): volumes of our own without copying the data."""
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for i, source in enumerate(sources):
        link = folder / (names[i] if names else source.name)
        link.symlink_to(source)
        links.append(link)
    return links


def files_of(out_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(out_dir.iterdir())}


def stamps(out_dir: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of each file of a result: a volume written again gets new ones (renamed temporaries)."""
    return {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in files_of(out_dir).items()}


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("semiseg-predict")]


def _default_sigint() -> None:
    """A shell that starts a job in the background ignores SIGINT in it, and children inherit that (so does
    a CI runner's): give the child Ctrl-C back, as a terminal's user has it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: object, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "semiseg", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=_default_sigint,
        **kwargs,
    )


def wait_for(proc: subprocess.Popen, event: str, count: int = 1) -> list[dict]:
    """Read ``proc``'s progress lines until the ``count``-th ``event``; the lines read."""
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if sum(e["event"] == event for e in seen) >= count:
            return seen
    pytest.fail(f"the process ended before {count} {event!r} event(s): {seen}\n{proc.stderr.read()[-2000:]}")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A UNet of 2 classes trained (config) at 32 px: 2 supervised steps on one LA volume's slices."""
    from semiseg.io.slices import build_slice_sets, load_volume
    from semiseg.training import Trainer
    from semiseg.training.config import TrainConfig
    from semiseg.training.trainer import TrainData

    run_dir = tmp_path_factory.mktemp("run")
    image = la_images(1)[0]
    volume = load_volume(image, LA / "labels" / image.name, 2)
    train, val, unlabeled = build_slice_sets([volume], [], axis=2, size=SIZE, min_val_slices=10**9)
    config = TrainConfig(iterations=2, size=SIZE, batch_labeled=2, batch_unlabeled=2, device="cpu", val_every=0,
                         checkpoint_every=1000, threads=1, precision="fp32")
    threads = torch.get_num_threads()  # the trainer sets this process's count: given back after
    try:
        Trainer(config, "supervised", {}, 2, run_dir, meta={"axis": 2}, log=ProgressLog(None, stream=None)).fit(
            TrainData(train, val, unlabeled, 2)
        )
    finally:
        torch.set_num_threads(threads)
    return run_dir / "checkpoint.pt"


@pytest.fixture
def keep_sigterm():
    """``semiseg predict --images`` in this process takes SIGTERM: pytest's handler is given back after."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


# -- same bytes as one at a time --------------------------------------------------------------------------------------
def test_outputs_are_byte_identical_to_single_predicts(checkpoint, tmp_path):
    images = la_images(3)
    proc = cli("predict", "--run", checkpoint.parent, "--images", *images, "--out", tmp_path / "many")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    for image in images:  # today's single predict, into the folder the many-volume path uses for it
        assert main(["predict", "--run", str(checkpoint), "--image", str(image),
                     "--out", str(tmp_path / "one" / image.name[:-7])]) == 0
    for image in images:
        name = image.name[:-7]
        many, one = files_of(tmp_path / "many" / name), files_of(tmp_path / "one" / name)
        assert sorted(many) == sorted(one) == sorted(f"{k}.nii.gz" if k != "review" else "review.json" for k in FILES)
        for file in one:
            assert many[file].read_bytes() == one[file].read_bytes(), f"{name}/{file} differs"
    lines = events(stdout)
    assert [e["event"] for e in lines] == ["predicted"] * 3 + ["done"]
    assert [e["name"] for e in lines[:3]] == [p.name[:-7] for p in images]
    assert lines[-1]["predicted"] == 3 and lines[-1]["skipped"] == 0 and lines[-1]["seconds"] > 0
    table = [line for line in stdout.splitlines() if not line.startswith("{")]
    assert table[0].startswith("volume") and "mean confidence" in table[0] and "least confident slices" in table[0]
    for image, row in zip(images, table[1:4]):
        review = json.loads((tmp_path / "many" / image.name[:-7] / "review.json").read_text())["slices"]
        cells = row.split()
        assert cells[:3] == [image.name[:-7], "predicted", "88"]
        assert float(cells[3]) == pytest.approx(sum(s["confidence"] for s in review) / 88, abs=1e-3)
        assert cells[4] == f"{review[0]['index']}:"  # the least confident slice first
    assert table[4].startswith("3 volume(s): 3 predicted, 0 skipped") and "volumes/s" in table[4]


# -- inputs -----------------------------------------------------------------------------------------------------------
def test_a_folder_means_its_images_sorted_by_name(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.nii.gz", "a.MHA", "c.nrrd", "d.nii", "e.mhd", "e.raw", "s.seg.nrrd", ".hidden.nii.gz", "notes.txt",
                 "sub/f.nii.gz"):
        (folder / name).write_bytes(b"")
    single = tmp_path / "z.nrrd"
    single.write_bytes(b"")
    assert [p.name for p in image_paths([single, folder])] == ["z.nrrd", "a.MHA", "b.nii.gz", "c.nrrd", "d.nii",
                                                               "e.mhd"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_bytes(b"")
    with pytest.raises(InputError, match="folder holds no image") as err:
        image_paths([folder, tmp_path / "empty"])
    assert str(tmp_path / "empty") in str(err.value)


def test_two_inputs_with_one_volume_name_exit_2_naming_both(checkpoint, tmp_path, capsys, keep_sigterm):
    first, second = tmp_path / "a" / "case1.nii.gz", tmp_path / "b" / "case1.nrrd"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"")
    assert main(["predict", "--run", str(checkpoint), "--images", str(first), str(second),
                 "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "'case1'" in message and str(first) in message and str(second) in message
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_missing_file_exits_2_naming_it(checkpoint, tmp_path, capsys, keep_sigterm):
    missing = tmp_path / "nowhere.nii.gz"
    assert main(["predict", "--run", str(checkpoint), "--images", str(la_images(1)[0]), str(missing),
                 "--out", str(tmp_path / "out")]) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreadable_volume_exits_2_and_keeps_every_finished_one(checkpoint, tmp_path, capsys, keep_sigterm):
    a, c = la_images(2)
    folder = tmp_path / "in"
    linked(folder, [a, c], ["a.nii.gz", "c.nii.gz"])
    (folder / "b.nii.gz").write_bytes(b"this is no image")
    out = tmp_path / "out"
    assert main(["predict", "--run", str(checkpoint), "--images", str(folder / "c.nii.gz"), "--out", str(out)]) == 0
    before = stamps(out / "c")
    capsys.readouterr()
    assert main(["predict", "--run", str(checkpoint), "--images", str(folder), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert str(folder / "b.nii.gz") in captured.err
    assert [e["event"] for e in events(captured.out)] == ["skipped", "predicted", "error"]  # c, a, then b
    assert finished(out / "a", folder / "a.nii.gz", "nii.gz")  # the volume before the bad one is written whole
    assert stamps(out / "c") == before and finished(out / "c", folder / "c.nii.gz", "nii.gz")
    assert not (out / "b").exists()


def test_finished_means_every_file_written_for_this_image_and_checkpoint(checkpoint, tmp_path):
    image = la_images(1)[0]
    out = tmp_path / "out"
    predict_many(Predictor(checkpoint, "cpu"), [image], out, log=ProgressLog(None, stream=None))
    result = out / image.name[:-7]
    assert finished(result, image, "nii.gz")
    assert not finished(result, image, "nrrd")  # another format: not there
    assert not finished(result, tmp_path / image.name, "nii.gz")  # another image of the same name
    assert not finished(result, image, "nii.gz", not_before=time.time() + 60)  # a checkpoint trained since
    assert finished(result, image, "nii.gz", axis=2) and not finished(result, image, "nii.gz", axis=0)
    (result / "entropy.nii.gz").unlink()
    assert not finished(result, image, "nii.gz")
    (result / ".entropy.tmp.nii.gz").write_bytes(b"half")  # killed while writing: the rerun does it again, cleanly
    (result / "review.json").unlink()
    assert not finished(result, image, "nii.gz")
    predict_many(Predictor(checkpoint, "cpu"), [image], out, log=ProgressLog(None, stream=None))
    assert finished(result, image, "nii.gz") and sorted(p.name for p in result.iterdir()) == sorted(
        ["labels.nii.gz", "confidence.nii.gz", "entropy.nii.gz", "review.json"]
    )


def test_a_rerun_with_another_island_setting_redoes_the_volumes(checkpoint, tmp_path, capsys):
    """``--keep-largest-island`` is recorded with each result: resuming with another setting predicts again."""
    images = linked(tmp_path / "in", la_images(2))
    out = tmp_path / "out"
    base = ["predict", "--run", str(checkpoint), "--images", *map(str, images), "--out", str(out)]
    assert main([*base, "--keep-largest-island", "all"]) == 0
    review = json.loads((out / images[0].name[:-7] / "review.json").read_text())
    assert review["keep_largest_island"] == [1]
    assert main([*base, "--keep-largest-island", "all"]) == 0
    assert [e["event"] for e in events(capsys.readouterr().out)].count("skipped") == 2  # the same setting: resumed
    assert main([*base, "--keep-largest-island", "none"]) == 0
    assert [e["event"] for e in events(capsys.readouterr().out)].count("predicted") == 2
    assert json.loads((out / images[0].name[:-7] / "review.json").read_text())["keep_largest_island"] == []
    assert finished(out / images[0].name[:-7], images[0], "nii.gz", islands=[])
    assert not finished(out / images[0].name[:-7], images[0], "nii.gz", islands=[1])


# -- resume after a kill ----------------------------------------------------------------------------------------------
def test_a_killed_run_resumes_without_redoing_finished_volumes(checkpoint, tmp_path):
    sources = la_images(6)
    folder = tmp_path / "in"
    linked(folder, sources, [f"v{i}.nii.gz" for i in range(len(sources))])
    out = tmp_path / "out"
    proc = cli("predict", "--run", checkpoint, "--images", folder, "--out", out)
    try:
        seen = wait_for(proc, "predicted")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    names = [f"v{i}" for i in range(len(sources))]
    done = [n for n in names if finished(out / n, folder / f"{n}.nii.gz", "nii.gz")]
    assert {e["name"] for e in seen if e["event"] == "predicted"} <= set(done)
    assert done and len(done) < len(names), f"the kill came too late to leave work for the rerun: {done}"
    before = {n: stamps(out / n) for n in done}

    again = cli("predict", "--run", checkpoint, "--images", folder, "--out", out)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    lines = events(stdout)
    assert {e["name"] for e in lines if e["event"] == "skipped"} == set(done)
    assert {e["name"] for e in lines if e["event"] == "predicted"} == set(names) - set(done)
    assert all(stamps(out / n) == before[n] for n in done)  # not rewritten: same inodes and times
    assert all(finished(out / n, folder / f"{n}.nii.gz", "nii.gz") for n in names)
    assert not list(out.glob("*/.*.tmp.*"))  # what the kill left half-written was redone and cleaned
    rows = {line.split()[0]: line.split()[1] for line in stdout.splitlines()[len(lines) + 1 : -2]}  # under the header
    assert rows == {n: "skipped" if n in done else "predicted" for n in names}


# -- stopping: cancel, Ctrl-C, a failing write; no thread left behind -------------------------------------------------
class _OnPredicted(ProgressLog):
    def __init__(self, action) -> None:
        super().__init__(None, stream=None)
        self.action, self.seen = action, []

    def emit(self, event, **fields):
        self.seen.append(event)
        if event == "predicted":
            self.action()
        return super().emit(event, **fields)


def test_cancel_stops_the_threads_and_keeps_the_finished_volumes(checkpoint, tmp_path):
    images = la_images(4)
    token = CancelToken()
    log = _OnPredicted(token.set)
    threads = torch.get_num_threads()
    with pytest.raises(Cancelled):
        predict_many(Predictor(checkpoint, "cpu"), images, tmp_path, log=log, cancel=token)
    assert our_threads() == [] and torch.get_num_threads() == threads
    assert log.seen[0] == "predicted" and log.seen[-1] == "cancelled"
    done = [p for p in images if finished(tmp_path / p.name[:-7], p, "nii.gz")]
    assert images[0] in done and len(done) == log.seen.count("predicted") < len(images)


def test_ctrl_c_stops_the_threads(checkpoint, tmp_path):
    predictor = Predictor(checkpoint, "cpu")
    calls = []

    def interrupt(*_):
        calls.append(1)
        if len(calls) == 8:  # the second volume's second batch (88 slices: 6 batches of 16)
            raise KeyboardInterrupt

    hook = predictor.model.register_forward_pre_hook(interrupt)
    log = _OnPredicted(lambda: None)
    try:
        with pytest.raises(KeyboardInterrupt):
            predict_many(predictor, la_images(3), tmp_path, log=log)
    finally:
        hook.remove()
    assert our_threads() == []
    assert log.seen[-1] == "cancelled" and log.seen.count("predicted") <= 1  # the first volume, if the writer had it
    assert all(finished(tmp_path / p.name[:-7], p, "nii.gz") == (i < log.seen.count("predicted"))
               for i, p in enumerate(la_images(3)))


def test_a_failing_write_stops_the_threads(checkpoint, tmp_path):
    images = la_images(3)
    (tmp_path / images[1].name[:-7]).write_text("a file where the volume's folder goes")
    with pytest.raises(InputError, match="cannot be written") as err:
        predict_many(Predictor(checkpoint, "cpu"), images, tmp_path, log=ProgressLog(None, stream=None))
    assert str(tmp_path / images[1].name[:-7]) in str(err.value)
    assert our_threads() == []
    assert finished(tmp_path / images[0].name[:-7], images[0], "nii.gz")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_ends_the_process_with_exit_3(checkpoint, tmp_path, sig):
    """A thread left running would keep the process alive after the main thread returns: it must end at once."""
    folder = tmp_path / "in"
    # 40 volumes (4 real ones linked under 40 names), so the signal finds the run going however fast the machine
    linked(folder, la_images(4) * 10, [f"v{i:02d}.nii.gz" for i in range(40)])
    proc = cli("predict", "--run", checkpoint, "--images", folder, "--out", tmp_path / "out")
    try:
        wait_for(proc, "predicted")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, stderr
    assert events(stdout)[-1]["event"] == "cancelled"
