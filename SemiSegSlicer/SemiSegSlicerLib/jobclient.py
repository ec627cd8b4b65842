"""Run the engine out of process: ``PYTHON -m semiseg train --job JOB_DIR``.

The engine runs in its own process group (its own session on POSIX), so that cancel ends the
whole tree it may have started (data loader workers...). Reader threads parse the JSON progress
lines of stdout into a queue and keep the tail of stderr; the GUI thread calls :meth:`JobClient.poll`
from a timer and never blocks. Nothing here touches Qt or MRML, so it is safe off the GUI thread.

Exit codes (docs/JOB_FORMAT.md): those of the engine's contract (``semiseg.contract.EXIT_MEANINGS``).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import threading
import time

from semiseg.contract import EXIT_CANCELLED, EXIT_MEANINGS, EXIT_OK

__all__ = ["JobClient", "engineCommand", "hiddenConsoleOptions"]

_STATE_OF_EXIT = {EXIT_OK: "done", EXIT_CANCELLED: "cancelled"}
_WINDOWS = os.name == "nt"


def hiddenConsoleOptions() -> dict:
    """``Popen`` options that start a console program without showing its window (Windows only).

    PythonSlicer is a console launcher: started as is, it opens a console window that stays for the
    whole training, and closing it kills the engine. ``slicer.util.launchConsoleProcess`` hides it the
    same way (``STARTF_USESHOWWINDOW`` with ``SW_HIDE``); the engine's children share the hidden console.
    """
    if not _WINDOWS:
        return {}
    info = subprocess.STARTUPINFO()
    info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
    info.wShowWindow = subprocess.SW_HIDE
    return {"startupinfo": info}


def engineCommand(python: str, jobDir: str, arguments=None) -> list[str]:
    """The engine's command line for a job folder, as an argument list (never a shell string).

    ``arguments`` replaces ``train --job JOB_DIR`` (e.g. ``predict --run RUN --images ... --out OUT``)."""
    if arguments is not None:
        return [python, "-m", "semiseg", *[os.fspath(a) for a in arguments]]
    return [python, "-m", "semiseg", "train", "--job", os.fspath(jobDir)]


class JobClient:
    """One engine process for one job folder.

    Args:
        python: the Python executable that can ``import semiseg`` (PythonSlicer inside Slicer).
        jobDir: the job folder (holding job.json).
        runDir: the run folder the engine writes (for the cancel file and status.json).
        env: the environment of the process (default: this process's); ``PYTHONUNBUFFERED`` is set.
        pythonPath: folders prepended to ``PYTHONPATH`` (where the ``semiseg`` package lies).
        stderrLines: how many last lines of stderr are kept for error messages.
        arguments: the engine's arguments instead of ``train --job JOB_DIR`` (:func:`engineCommand`); the
            process still runs in ``jobDir``.
    """

    def __init__(self, python: str, jobDir: str, runDir: str | None = None, env: dict | None = None,
                 pythonPath=(), stderrLines: int = 40, arguments=None):
        self.python = python
        self.arguments = list(arguments) if arguments is not None else None
        self.jobDir = os.path.abspath(os.fspath(jobDir))
        self.runDir = os.path.abspath(runDir) if runDir else os.path.join(self.jobDir, "run")
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONUNBUFFERED"] = "1"
        if pythonPath:
            paths = [os.fspath(p) for p in pythonPath] + [p for p in [self.env.get("PYTHONPATH")] if p]
            self.env["PYTHONPATH"] = os.pathsep.join(paths)
        self.process: subprocess.Popen | None = None
        self.events: queue.Queue = queue.Queue()
        self.stderrTail: collections.deque = collections.deque(maxlen=stderrLines)
        self.otherOutput: collections.deque = collections.deque(maxlen=stderrLines)
        self.lastProgress: dict = {}
        self.errorEvents: list[str] = []
        self.cancelRequested = False
        self._readers: list[threading.Thread] = []

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine. Raises ``RuntimeError`` if already started, ``OSError`` if it cannot run."""
        if self.process is not None:
            raise RuntimeError("this job was already started")
        kwargs = hiddenConsoleOptions()
        if _WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        self.process = subprocess.Popen(
            engineCommand(self.python, self.jobDir, self.arguments), cwd=self.jobDir, env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
            bufsize=1, **kwargs)
        self._readers = [threading.Thread(target=self._readStdout, daemon=True, name="semiseg-stdout"),
                         threading.Thread(target=self._readStderr, daemon=True, name="semiseg-stderr")]
        for reader in self._readers:
            reader.start()

    def _readStdout(self) -> None:
        for line in self.process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                self.events.put(event)
            else:
                self.otherOutput.append(line)
        self.process.stdout.close()

    def _readStderr(self) -> None:
        for line in self.process.stderr:
            if line.strip():
                self.stderrTail.append(line.rstrip())
        self.process.stderr.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def finished(self) -> bool:
        """The process ended and its output was read to the end."""
        return (self.process is not None and self.process.poll() is not None
                and not any(reader.is_alive() for reader in self._readers))

    def poll(self) -> list[dict]:
        """The progress events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if event.get("event") == "iteration":
                self.lastProgress.update(event)
            elif event.get("event") == "validation":
                self.lastProgress["dice"] = event.get("dice")
            elif event.get("event") == "error":
                self.errorEvents.append(str(event.get("message", "")))
            events.append(event)
        return events

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process and its readers; the exit code, or None on timeout."""
        if self.process is None:
            raise RuntimeError("this job was not started")
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self._readers:
            reader.join(5.0)
        return code

    def cancel(self, graceSeconds: float = 10.0) -> None:
        """Stop the job and every process it started; returns when they are gone.

        Creates ``RUN_DIR/cancel`` and sends SIGTERM to the process group (POSIX), so the engine can
        keep its last good checkpoint and exit with code 3; after ``graceSeconds`` whatever is left of
        the group is killed (SIGKILL; on Windows ``taskkill /T /F``). A job that already ended is left
        alone: no cancel file in its finished run, no signal to a process group whose ID may be reused.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.cancelRequested = True
        try:
            os.makedirs(self.runDir, exist_ok=True)
            with open(os.path.join(self.runDir, "cancel"), "w", encoding="utf-8") as f:
                f.write("cancelled by the user\n")
        except OSError:
            pass  # the signal below is enough
        if _WINDOWS:
            self._cancelWindows(graceSeconds)
        else:
            self._cancelPosix(graceSeconds)
        for reader in self._readers:
            reader.join(5.0)

    def _cancelPosix(self, graceSeconds: float) -> None:
        # PythonSlicer is a launcher that runs python-real as its child and dies at once on SIGTERM:
        # the engine's orderly exit (checkpoint, status, exit code 3) happens in the child, so the
        # whole group gets the grace period, not only the process we started.
        group = self.process.pid  # start_new_session: the group ID is the leader's PID
        deadline = time.monotonic() + graceSeconds
        _signalGroup(group, signal.SIGTERM)
        while time.monotonic() < deadline:
            self.process.poll()  # reap the leader, or its zombie keeps the group alive
            if not _groupAlive(group):
                break
            time.sleep(0.05)
        _signalGroup(group, signal.SIGKILL)
        self.process.wait()

    def _cancelWindows(self, graceSeconds: float) -> None:
        # No SIGTERM on Windows: the engine sees the cancel file at its next iteration; then the tree goes.
        try:
            self.process.wait(graceSeconds)
        except subprocess.TimeoutExpired:
            pass
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(self.process.pid)], capture_output=True,
                       **hiddenConsoleOptions())
        self.process.wait()

    # -- outcome ----------------------------------------------------------------------------------

    @property
    def exitCode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def state(self) -> str:
        """``"idle"``, ``"running"``, ``"done"``, ``"cancelled"`` or ``"failed"``."""
        if self.process is None:
            return "idle"
        code = self.process.poll()
        if code is None:
            return "running"
        if self.cancelRequested and code != 0:
            return "cancelled"
        return _STATE_OF_EXIT.get(code, "failed")

    def status(self) -> dict:
        """The engine's ``RUN_DIR/status.json`` (``{}`` when missing or unreadable)."""
        try:
            with open(os.path.join(self.runDir, "status.json"), encoding="utf-8") as f:
                value = json.load(f)
            return value if isinstance(value, dict) else {}
        except (OSError, ValueError):
            return {}

    def errorMessage(self) -> str:
        """A message for a failed job: what the exit code means, the engine's message, stderr's tail."""
        code = self.exitCode
        if code is None or self.state() != "failed":
            return ""
        if code < 0:
            meaning = f"killed by signal {-code}"
        else:
            meaning = EXIT_MEANINGS.get(code, "unexpected exit code")
        lines = [f"Training failed ({meaning}, exit code {code})."]
        message = self.status().get("message") or (self.errorEvents[-1] if self.errorEvents else "")
        if message:
            lines.append(message)
        if self.stderrTail:
            lines.append("Last engine output:\n" + "\n".join(list(self.stderrTail)[-15:]))
        return "\n".join(lines)


def _signalGroup(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _groupAlive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False

