"""Helpers shared by the web tests: paths, a synthetic volume, free ports, the server process, and the steps and
checks the browser tests share."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cdp import stop_process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT.parent / "shared" / "data"
SCREENSHOTS = HERE / "screenshots"  # the browser test's screenshots (ignored by git; the tests write nowhere else)
RESULTS_SCREENSHOT = "04-results.png"  # the one after training, which readme_screenshot.py copies for the README


def synthetic_volume(path: Path, shape=(8, 48, 40)) -> Path:
    """A small NRRD volume (K, J, I) with a bright disc, written with SimpleITK."""
    import SimpleITK as sitk

    k, j, i = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    disc = np.hypot(j - shape[1] / 2, i - shape[2] / 2) < min(shape[1:]) / 4
    image = sitk.GetImageFromArray((100 + 300 * disc + 5 * k).astype(np.float32))
    image.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(image, str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_environment() -> dict:
    """The environment of a server process: offscreen EGL rendering, unbuffered output."""
    env = dict(os.environ)
    env.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("SEMISEG_TOKEN", None)
    return env


class ServerProcess:
    """``semiseg serve`` in a subprocess on a free local port; ``url`` once it printed that it is ready.

    Args:
        args: extra command-line arguments.
        port: the port (default: a free one).
        timeout: seconds to wait for the ready line.
        env: the server's environment (default: :func:`server_environment`).
        launcher: what runs ``serve ARGS`` (default ``python -m semiseg``; ``[python, fakeserve.py, FAKE_DIR]``
            serves with the fake engine).
    """

    def __init__(self, args=(), port: int | None = None, timeout: float = 120.0, env: dict | None = None,
                 launcher=None):
        import subprocess
        import threading
        import time

        self.port = port or free_port()
        launcher = [str(part) for part in launcher] if launcher else [sys.executable, "-m", "semiseg"]
        command = [*launcher, "serve", "--port", str(self.port), *map(str, args)]
        self.process = subprocess.Popen(
            command,
            cwd=str(ROOT),
            env=env or server_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self.url = None
        ready = threading.Event()

        def read():
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                if "ready at " in line and self.url is None:
                    self.url = line.split("ready at ", 1)[1].strip()
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.2):
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"semiseg serve was not ready in {timeout} s:\n" + self.output())
        if self.url is None:
            self.stop()
            raise RuntimeError(f"semiseg serve exited with code {self.process.returncode}:\n" + self.output())

    def output(self, last: int = 60) -> str:
        return "\n".join(line for line in self.lines[-last:] if "WindowResizeEvent" not in line)

    def stop(self) -> int:
        return stop_process(self.process, 20)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@contextmanager
def fake_engine_server(tmp_path: Path, volumes, fake: dict):
    """``semiseg serve`` of ``volumes`` (segment "disc") whose jobs the fake engine runs (``fakeserve.py``; ``fake``
    is its ``FAKE_ENGINE``), its cache and output in ``tmp_path`` (``process.tmp``); prints its output at the end."""
    env = server_environment()
    env["FAKE_ENGINE"] = json.dumps(fake)
    args = [*volumes, "--segments", "disc", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "out"]
    with ServerProcess(args, env=env, launcher=[sys.executable, HERE / "fakeserve.py", tmp_path / "fake"]) as process:
        process.tmp = tmp_path
        yield process
        print("---- semiseg serve output ----\n" + process.output(200))


def open_gate(server) -> None:
    """Let the fake engine go on from the preview it waits at (the newest job's: a retrain is a second job)."""
    runs = sorted((server.tmp / "cache").glob("job-*/run"))  # job-<date>-<time>-<n>: in the order they were made
    assert runs, "no job"
    (runs[-1] / "go").write_text("")


# -- the page (a Browser of cdp.py; a Page of test_e2e_browser.py) ---------------------------------------------

ROWS = "[...document.querySelectorAll('#review-table tbody tr')].map(r => [...r.cells].map(c => c.innerText))"
NO_MARKER = "document.querySelector('#preview-marker') === null"


def fresh_screenshots(name: str) -> Path:
    """The folder of a test's screenshots, ``SCREENSHOTS/name``, emptied."""
    shots = SCREENSHOTS / name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    return shots


def review_rows(browser) -> list[list[str]]:
    """The review list's rows, every cell."""
    return browser.evaluate(ROWS)


def wait_rows(browser, rows, equal: bool, what: str) -> None:
    """Wait until the review list's rows (every cell) are ``rows`` (``equal``), or are other rows."""
    same = f"JSON.stringify({ROWS}) === {json.dumps(json.dumps(rows, separators=(',', ':'), ensure_ascii=False))}"
    browser.wait_for(same if equal else f"({ROWS}).length > 0 && !({same})", timeout=30, what=what)


def shown_volume(browser) -> str:
    """The name of the volume shown (and painted) in the volume list."""
    return browser.evaluate("(document.querySelector('#volumes tr.shown td.volume-name') || {}).innerText || ''")


def mark_two_volume_study(page) -> None:
    """The first two volumes marked as part of the study, a slice checked (labelled, empty) in each; the second
    shown."""
    b = page.b
    b.click("#study-check-0")
    b.click("#study-check-1")
    page.wait_text("#study-text", "2 volumes in the study")
    b.click("#mark-checked")
    page.wait_text("#volume-info-0", "1 labelled")
    b.click("#volume-1")
    page.wait_text("#current-slice", "of 0-5")
    b.click("#mark-checked")
    page.wait_text("#volume-info-1", "1 labelled")


def wait_done(page) -> None:
    """Wait until training is done and the preview marker is gone."""
    page.wait_text("#progress-text", "Done", timeout=60)
    page.b.wait_for(NO_MARKER, timeout=30, what="the marker to go")


def final_results(page, server, previous):
    """Let the gated fake engine end training: done, the marker gone, nothing preliminary in the progress line;
    returns the slice view once it changed from ``previous`` (screenshot "final")."""
    open_gate(server)
    wait_done(page)
    assert "preliminary" not in page.b.text("#progress-text")
    final = page.settled_view(previous)
    page.shot("final")
    return final


def console_exceptions(browser) -> list[str]:
    """The exceptions the page's console showed."""
    return [line for line in browser.console if line.startswith("exception")]


def cancel_shows_the_last_results_again(page, rows, preview, what: str):
    """Press Cancel while a retrain shows its previews: the job is cancelled and the last results are shown again,
    the marker goes, the review list is ``rows`` again (``what``); returns the slice view once it changed from
    ``preview`` (screenshot "cancelled")."""
    b = page.b
    b.click("#cancel-button")
    page.wait_text("#progress-text", "cancelled", timeout=60)
    assert "The last results are shown again" in b.text("#progress-text")
    b.wait_for(NO_MARKER, timeout=30, what="the marker to go")
    wait_rows(b, rows, True, what)
    restored = page.settled_view(preview)
    page.shot("cancelled")
    return restored
