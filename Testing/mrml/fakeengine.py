"""A stand-in for ``python -m semiseg train --job JOB_DIR`` that the job-client tests control.

:func:`install` writes a package ``semiseg`` whose ``__main__`` behaves as ``JOB_DIR/fake.json`` says:

- ``{"mode": "done"}``: progress lines (and one non-JSON line), then predictions as the engine writes
  them (labels = the job's labels with slice 0 also filled, a constant confidence, review.json),
  ``status.json`` done, exit 0;
- ``{"mode": "hang", "obey_sigterm": bool}``: starts a child process (reported as
  ``{"event": "child", "pid": N}``), then prints iterations forever; with ``obey_sigterm`` it stops
  on SIGTERM with status cancelled and exit 3 (after ``sigterm_seconds``, 0 by default, as the engine
  takes to write its checkpoint), otherwise it and its child ignore SIGTERM. With ``"launcher": true``
  the process started is a launcher, as PythonSlicer is: it runs the engine as its child and dies at
  once on SIGTERM;
- ``{"mode": "crash"}``: a traceback on stderr, an error line, status failed, exit 1;
- ``{"mode": "bad_input"}``: a message naming the file, exit 2.

Without ``fake.json`` the same JSON is read from the environment variable ``FAKE_ENGINE``.

Put the folder returned by :func:`install` first on ``PYTHONPATH`` so it shadows the real engine.
"""

from __future__ import annotations

from pathlib import Path

MAIN = r'''
import json, os, signal, subprocess, sys, time

job_dir = sys.argv[sys.argv.index("--job") + 1]
job = json.load(open(os.path.join(job_dir, "job.json")))
fake_file = os.path.join(job_dir, "fake.json")
fake = json.load(open(fake_file)) if os.path.exists(fake_file) else json.loads(os.environ["FAKE_ENGINE"])
run_dir = os.path.join(job_dir, job.get("run_dir", "run"))
os.makedirs(run_dir, exist_ok=True)


def say(**event):
    print(json.dumps(event), flush=True)


def status(state, message, code):
    json.dump({"state": state, "message": message, "exit_code": code}, open(os.path.join(run_dir, "status.json"), "w"))


mode = fake["mode"]
if mode == "hang" and fake.get("launcher") and not os.environ.get("FAKE_ENGINE_CHILD"):
    engine = subprocess.Popen([sys.executable, "-m", "semiseg"] + sys.argv[1:], env=dict(os.environ, FAKE_ENGINE_CHILD="1"))
    sys.exit(engine.wait())  # SIGTERM's default action ends the launcher at once
say(event="start", iterations=3, method=job["method"], device="cpu", labeled_slices=2, unlabeled_slices=4)
if mode == "done":
    import numpy as np
    import SimpleITK as sitk

    print("a line that is not JSON", flush=True)
    for it in (1, 2, 3):
        say(event="iteration", iteration=it, iterations=3, loss=1.0 / it, terms={"sup": 1.0 / it}, lr=0.01,
            seconds_left=3 - it, elapsed=it)
    say(event="validation", iteration=3, dice=0.75)
    labels = sitk.ReadImage(os.path.join(job_dir, job["labels"]))
    array = sitk.GetArrayFromImage(labels)
    array[0] = array.max(axis=0)
    out = os.path.join(run_dir, "predictions", "image")
    os.makedirs(out, exist_ok=True)
    ext = job.get("output_format", "nii.gz")
    predicted = sitk.GetImageFromArray(array.astype(np.uint8))
    predicted.CopyInformation(labels)
    sitk.WriteImage(predicted, os.path.join(out, "labels." + ext))
    confidence = sitk.GetImageFromArray(np.full(array.shape, 0.8, np.float32))
    confidence.CopyInformation(labels)
    sitk.WriteImage(confidence, os.path.join(out, "confidence." + ext))
    slices = [{"index": k, "confidence": 0.5 + 0.01 * k, "foreground_fraction": 0.1, "labeled": False}
              for k in range(array.shape[0])]
    json.dump({"axis": 2, "statistic": "fake", "slices": slices}, open(os.path.join(out, "review.json"), "w"))
    open(os.path.join(run_dir, "checkpoint.pt"), "wb").write(b"fake")
    say(event="predicted", name="image", dir="predictions/image")
    say(event="done", iteration=3, seconds=0.1)
    status("done", "", 0)
    sys.exit(0)
if mode == "hang":
    obey = fake.get("obey_sigterm", True)
    child_code = "import signal, time\n" + ("" if obey else "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n") + "time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", child_code])
    say(event="child", pid=child.pid)

    def on_term(signum, frame):
        time.sleep(fake.get("sigterm_seconds", 0))
        status("cancelled", "cancelled by SIGTERM", 3)
        sys.exit(3)

    signal.signal(signal.SIGTERM, on_term if obey else signal.SIG_IGN)
    it = 0
    while True:
        it += 1
        say(event="iteration", iteration=it, iterations=10**6, loss=0.5, terms={}, lr=0.01, seconds_left=1e6, elapsed=it)
        if os.path.exists(os.path.join(run_dir, "cancel")) and fake.get("obey_cancel_file", False):
            status("cancelled", "cancel file", 3)
            sys.exit(3)
        time.sleep(0.05)
if mode == "crash":
    say(event="error", message="CUDA is out of memory (fake)")
    print("Traceback (most recent call last):", file=sys.stderr)
    print('  File "trainer.py", line 1, in step', file=sys.stderr)
    print("RuntimeError: fake crash in the trainer", file=sys.stderr, flush=True)
    status("failed", "internal error: fake crash in the trainer", 1)
    sys.exit(1)
if mode == "bad_input":
    print("labels.nrrd: is not on the image's grid", file=sys.stderr, flush=True)
    status("failed", "labels.nrrd: is not on the image's grid", 2)
    sys.exit(2)
sys.exit(99)
'''


def install(folder: Path) -> Path:
    """Write the fake ``semiseg`` package under ``folder``; returns ``folder`` (for PYTHONPATH)."""
    package = folder / "semiseg"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""A fake engine for the job-client tests."""\n')
    (package / "__main__.py").write_text(MAIN)
    return folder


def configure(jobDir, **fake) -> None:
    """Say what the fake engine does for the job in ``jobDir``."""
    import json

    (Path(jobDir) / "fake.json").write_text(json.dumps(fake))
