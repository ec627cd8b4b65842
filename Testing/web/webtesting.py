"""Helpers shared by the web tests: paths, a synthetic volume, free ports, the server process."""

from __future__ import annotations

import os
import socket
import sys
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
