"""A stand-in for ``python -m semiseg train --job JOB_DIR`` that the job-client tests control.

:func:`install` writes a package ``semiseg`` whose ``__main__`` behaves as ``JOB_DIR/fake.json`` says:

- ``{"mode": "done"}``: progress lines (and one non-JSON line), then predictions as the engine writes
  them (labels = the job's labels with slice 0 also filled, a constant confidence, review.json),
  ``status.json`` done, exit 0;
- ``{"mode": "preview", "previews": P, "gate": bool, "broken": [p...], "every": 10}``: as the engine's
  live results (docs/JOB_FORMAT.md): P previews in ``RUN_DIR/preview/image/`` (the same files as a
  prediction, each replaced atomically, review.json last), each followed by its ``preview`` line at
  iteration ``every * p``, then the final result of ``done``. Preview ``p`` labels a disc of radius
  ``0.15 + 0.1 p`` of the slice's size on every slice (label 2 inside half that radius when there are
  two classes or more), with confidence ``0.5 + 0.1 p`` and a review list whose least confident slice,
  and the one of the largest gain, is slice ``p`` (modulo the slice count). With ``gate`` it waits for a file
  ``RUN_DIR/go`` (and removes it) after each preview, so a test sees every preview; previews listed in ``broken`` are
  announced over a half-written labels file, as a reader that catches the files being replaced sees them;
- ``{"mode": "hang", "obey_sigterm": bool}``: starts a child process (reported as
  ``{"event": "child", "pid": N}``), then prints iterations forever; with ``obey_sigterm`` it stops
  on SIGTERM with status cancelled and exit 3 (after ``sigterm_seconds``, 0 by default, as the engine
  takes to write its checkpoint), otherwise it and its child ignore SIGTERM. With ``"launcher": true``
  the process started is a launcher, as PythonSlicer is: it runs the engine as its child and dies at
  once on SIGTERM;
- ``{"mode": "crash"}``: a traceback on stderr, an error line, status failed, exit 1;
- ``{"mode": "bad_input"}``: a message naming the file, exit 2.

A format-2 job (``"volumes"``) in mode ``done`` is run as the engine runs it (docs/JOB_FORMAT.md): a ``volume`` line
per volume (``volumes`` then ``predict_images``), then per volume ``predicting``, ``predictions/<name>/`` (its labels
with slice 0 also filled, or a block for an unlabelled volume; confidence 0.8; review slice ``k`` at ``0.5 + 0.01 k``
with gain ``0.05 / (k + 1)``)
and ``predicted``. In mode ``preview`` it first writes the study's previews in ``RUN_DIR/preview/<name>/`` as the
engine does: preview 0 of every labelled volume, then previews ``1 .. P-1`` one volume at a time, the labelled
volumes in turn (preview ``p`` as above, at iteration ``every * p``); with ``gate`` it waits for ``RUN_DIR/go``
after preview 0 of the last volume and after each later preview; ``broken`` as above.

``semiseg predict --run RUN --images A B ... --out OUT [--format F]`` writes ``OUT/<name>/`` per image (the upper-left
quarter of every slice labelled 1, confidence 0.6, review slice ``k`` at ``0.505 + 0.01 k`` with gain
``0.049 / (k + 1)``) with its ``predicted`` line, then ``done``; exit 2 without ``RUN/checkpoint.pt``.

Without ``fake.json`` the same JSON is read from the environment variable ``FAKE_ENGINE``.

Put the folder returned by :func:`install` first on ``PYTHONPATH`` so it shadows the real engine.
"""

from __future__ import annotations

from pathlib import Path

MAIN = r'''
import json, os, signal, subprocess, sys, time



def say(**event):
    print(json.dumps(event), flush=True)


def volume_name(path):
    name = os.path.basename(os.path.normpath(path))
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def fake_predict():
    """``semiseg predict --run RUN --images A B ... --out OUT [--format F]``: OUT/<name>/ per image."""
    import numpy as np
    import SimpleITK as sitk

    args = sys.argv[2:]
    images, out, ext, n = [], None, "nii.gz", 0
    while n < len(args):
        if args[n] == "--images":
            n += 1
            while n < len(args) and not args[n].startswith("--"):
                images.append(args[n])
                n += 1
            continue
        if args[n] == "--out":
            out = args[n + 1]
        elif args[n] == "--format":
            ext = args[n + 1]
        n += 2
    if not os.path.isfile(os.path.join(args[args.index("--run") + 1], "checkpoint.pt")):
        print("semiseg: error: no checkpoint.pt in the run folder", file=sys.stderr, flush=True)
        sys.exit(2)
    for number, path in enumerate(images, start=1):
        image = sitk.ReadImage(path)
        shape = sitk.GetArrayFromImage(image).shape
        labels = np.zeros(shape, np.uint8)
        labels[:, : shape[1] // 2, : shape[2] // 2] = 1
        slices = [{"index": k, "confidence": 0.505 + 0.01 * k, "gain": 0.049 / (k + 1), "foreground_fraction": 0.25,
                   "labeled": False} for k in range(shape[0])]
        name = volume_name(path)
        write_prediction(os.path.join(out, name), labels, np.full(shape, 0.6, np.float32),
                         {"axis": 2, "statistic": "fake", "slices": slices}, image, ext)
        say(event="predicted", name=name, dir=os.path.join(out, name), number=number, of=len(images), seconds=0.01)
    say(event="done", volumes=len(images), predicted=len(images), skipped=0, seconds=0.1)
    sys.exit(0)


if sys.argv[1] != "predict":
    job_dir = sys.argv[sys.argv.index("--job") + 1]
    job = json.load(open(os.path.join(job_dir, "job.json")))
    fake_file = os.path.join(job_dir, "fake.json")
    fake = json.load(open(fake_file)) if os.path.exists(fake_file) else json.loads(os.environ["FAKE_ENGINE"])
    run_dir = os.path.join(job_dir, job.get("run_dir", "run"))
    os.makedirs(run_dir, exist_ok=True)


def status(state, message, code):
    json.dump({"state": state, "message": message, "exit_code": code}, open(os.path.join(run_dir, "status.json"), "w"))


def write_prediction(out, labels, confidence, review, like, ext=None):
    """labels, confidence, entropy and review.json in ``out``, each written under a temporary name and
    moved into place (os.replace), review.json last: what the engine does."""
    import numpy as np
    import SimpleITK as sitk

    os.makedirs(out, exist_ok=True)
    ext = ext or job.get("output_format", "nii.gz")
    entropy = -np.log(np.clip(confidence, 1e-6, 1.0)).astype(np.float32)
    for stem, array in (("labels", labels.astype(np.uint8)), ("confidence", confidence.astype(np.float32)),
                        ("entropy", entropy)):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(like)
        temporary = os.path.join(out, f".{stem}.tmp.{ext}")
        sitk.WriteImage(image, temporary)
        os.replace(temporary, os.path.join(out, f"{stem}.{ext}"))
    with open(os.path.join(out, ".review.tmp.json"), "w") as f:
        json.dump(review, f)
    os.replace(os.path.join(out, ".review.tmp.json"), os.path.join(out, "review.json"))


def wait_for_gate():
    gate = os.path.join(run_dir, "go")
    while not os.path.exists(gate):
        time.sleep(0.05)
    os.remove(gate)


def write_preview(name, image_file, p):
    """Preview ``p`` of volume ``name`` (its image in ``image_file``) in RUN_DIR/preview/<name>/, then its
    ``iteration`` and ``preview`` lines (over a half-written labels file when ``p`` is listed in ``broken``)."""
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(os.path.join(job_dir, image_file))
    shape = sitk.GetArrayFromImage(image).shape  # K, J, I
    classes = len(job.get("classes") or ["background", "foreground"])
    _, j, i = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    distance = np.hypot(j - (shape[1] - 1) / 2, i - (shape[2] - 1) / 2) / min(shape[1:])
    every, out = fake.get("every", 10), os.path.join(run_dir, "preview", name)
    radius = 0.15 + 0.1 * p
    labels = (distance < radius).astype(np.uint8)
    if classes > 2:
        labels[distance < radius / 2] = 2
    order = [(p + k) % shape[0] for k in range(shape[0])]
    review = {"axis": 2, "statistic": "fake preview", "slices": [
        {"index": k, "confidence": 0.4 + 0.05 * rank, "gain": 0.05 / (rank + 1),
         "foreground_fraction": float(labels[k].mean()), "labeled": False} for rank, k in enumerate(order)]}
    write_prediction(out, labels, np.full(shape, 0.5 + 0.1 * p, np.float32), review, image)
    if p in fake.get("broken", []):
        with open(os.path.join(out, "labels." + job.get("output_format", "nii.gz")), "r+b") as f:
            f.truncate(120)  # half-written: the header only
    say(event="iteration", iteration=every * p, iterations=every * fake.get("previews", 2), loss=1.0 / (p + 1),
        terms={}, lr=0.01, seconds_left=1.0, elapsed=p)
    say(event="preview", iteration=every * p, iterations=every * fake.get("previews", 2), name=name,
        dir=f"preview/{name}", preliminary=True, seconds=0.1 * p)


def previews():
    for p in range(fake.get("previews", 2)):
        write_preview("image", job["image"], p)
        if fake.get("gate"):
            wait_for_gate()


def study_previews():
    """A format-2 job's previews, as the engine's: preview 0 of every labelled volume (its prior alone), then
    previews 1, 2, ... one volume at a time, the labelled volumes in turn; with ``gate``, a wait after preview 0 of
    the last volume and after each later preview."""
    labelled = [volume_name(v["image"]) for v in job["volumes"] if v.get("labels")]
    images = {volume_name(v["image"]): v["image"] for v in job["volumes"]}
    for name in labelled:
        write_preview(name, images[name], 0)
    if fake.get("gate"):
        wait_for_gate()
    for p in range(1, fake.get("previews", 2)):
        name = labelled[(p - 1) % len(labelled)]
        write_preview(name, images[name], p)
        if fake.get("gate"):
            wait_for_gate()


def study_done():
    """A format-2 job: one ``volume`` line per volume, then each volume's prediction in
    ``predictions/<name>/`` (labels = its labels with slice 0 also filled, or a block for an unlabelled
    volume; confidence 0.8; review slice k at 0.5 + 0.01 k with gain 0.05 / (k + 1)), ``predicting``/``predicted``
    lines as the engine's."""
    import numpy as np
    import SimpleITK as sitk

    entries = [dict(v, place=f"volumes[{n}]", train=True) for n, v in enumerate(job["volumes"])]
    entries += [{"image": p, "place": f"predict_images[{n}]", "train": False}
                for n, p in enumerate(job.get("predict_images", []))]
    say(event="setup", volumes=len(entries))
    for e in entries:
        say(event="volume", name=volume_name(e["image"]), place=e["place"], image=e["image"], axis=2,
            slices=0, labeled_slices=e.get("labeled_slices", []), train=e["train"])
    for it in (1, 2, 3):
        say(event="iteration", iteration=it, iterations=3, loss=1.0 / it, terms={"sup": 1.0 / it}, lr=0.01,
            seconds_left=3 - it, elapsed=it)
    open(os.path.join(run_dir, "checkpoint.pt"), "wb").write(b"fake")
    for number, e in enumerate(entries, start=1):
        name = volume_name(e["image"])
        say(event="predicting", name=name, number=number, of=len(entries))
        image = sitk.ReadImage(os.path.join(job_dir, e["image"]))
        if e.get("labels"):
            array = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(job_dir, e["labels"])))
            array[0] = array.max(axis=0)
        else:
            array = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
            array[:, :2, :2] = 1
        slices = [{"index": k, "confidence": 0.5 + 0.01 * k, "gain": 0.05 / (k + 1), "foreground_fraction": 0.1,
                   "labeled": False} for k in range(array.shape[0])]
        write_prediction(os.path.join(run_dir, "predictions", name), array, np.full(array.shape, 0.8, np.float32),
                         {"axis": 2, "statistic": "fake", "slices": slices}, image)
        say(event="predicted", name=name, dir=f"predictions/{name}", number=number, of=len(entries))
    say(event="done", iteration=3, seconds=0.1)
    status("done", "", 0)
    sys.exit(0)


if sys.argv[1] == "predict":
    fake_predict()
mode = fake["mode"]
if "volumes" in job and mode == "preview":
    study_previews()
    mode = "done"
if "volumes" in job and mode == "done":
    study_done()
if mode == "hang" and fake.get("launcher") and not os.environ.get("FAKE_ENGINE_CHILD"):
    engine = subprocess.Popen([sys.executable, "-m", "semiseg"] + sys.argv[1:], env=dict(os.environ,
    FAKE_ENGINE_CHILD="1"))
    sys.exit(engine.wait())  # SIGTERM's default action ends the launcher at once
say(event="start", iterations=3, method=job["method"], device="cpu", labeled_slices=2, unlabeled_slices=4)
if mode == "preview":
    previews()
    mode = "done"
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
    slices = [{"index": k, "confidence": 0.5 + 0.01 * k, "foreground_fraction": 0.1, "labeled": False}
              for k in range(array.shape[0])]
    write_prediction(os.path.join(run_dir, "predictions", "image"), array, np.full(array.shape, 0.8, np.float32),
                     {"axis": 2, "statistic": "fake", "slices": slices}, labels)
    open(os.path.join(run_dir, "checkpoint.pt"), "wb").write(b"fake")
    say(event="predicted", name="image", dir="predictions/image")
    say(event="done", iteration=3, seconds=0.1)
    status("done", "", 0)
    sys.exit(0)
if mode == "hang":
    obey = fake.get("obey_sigterm", True)
    ignore = "" if obey else "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    child_code = "import signal, time\n" + ignore + "time.sleep(600)"
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
        say(event="iteration", iteration=it, iterations=10**6, loss=0.5, terms={}, lr=0.01, seconds_left=1e6,
        elapsed=it)
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
