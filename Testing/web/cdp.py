"""A small headless Chromium driver over the DevTools protocol (CDP), for the web end-to-end tests.

Starts Debian's ``/usr/bin/chromium`` (never downloads a browser), connects to its page target with
``websocket-client`` and sends real input events (mouse presses, moves, wheel, typed text), so the
page under test sees exactly what a user's browser would send. Screenshots come from
``Page.captureScreenshot`` as PNG bytes.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    """The Chromium binary: ``$CHROMIUM``, else the first of the usual Debian paths that exists."""
    for path in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


class CdpError(RuntimeError):
    pass


def stop_process(process: subprocess.Popen, grace: float) -> int | None:
    """Terminate ``process`` if it still runs, kill it after ``grace`` seconds; its return code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Browser:
    """One headless Chromium with one page, driven over CDP.

    Args:
        binary: the Chromium executable.
        width, height: the window size in CSS pixels.
        timeout: seconds to wait for a CDP answer.
    """

    def __init__(self, binary: str, width: int = 1400, height: int = 900, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="semiseg-chromium-")
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self.profile}", "--remote-debugging-port=0", f"--window-size={width},{height}",
                "about:blank"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        self.console: list[str] = []
        self.requests: list[str] = []  # URLs the page asked for (after ``Network.enable``)
        try:
            port = self._devtoolsPort()
            self.ws = websocket.create_connection(self._pageSocket(port), timeout=timeout, suppress_origin=True)
            for domain in ("Page", "Runtime", "DOM"):
                self.send(f"{domain}.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
        except Exception:
            self.close()
            raise

    # -- connection -------------------------------------------------------------------------------

    def _devtoolsPort(self) -> int:
        portFile = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CdpError(
                    f"chromium exited with code {self.process.returncode}: "
                    f"{self.process.stderr.read().decode(errors='replace')[-2000:]}"
                )
            if portFile.is_file():
                lines = portFile.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.1)
        raise CdpError("chromium did not open its DevTools port within 30 s")

    def _pageSocket(self, port: int) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                targets = json.load(answer)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise CdpError("chromium has no page target")

    def send(self, method: str, **params) -> dict:
        """Send one CDP command and return its result; events that arrive meanwhile are kept."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)
        raise CdpError(f"{method}: no answer within {self.timeout} s")

    def _event(self, message: dict) -> None:
        if message.get("method") == "Runtime.consoleAPICalled":
            args = message["params"].get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif message.get("method") == "Network.requestWillBeSent":
            self.requests.append(message["params"]["request"]["url"])
        elif message.get("method") == "Runtime.exceptionThrown":
            self.console.append("exception: " + json.dumps(message["params"].get("exceptionDetails", {}))[:500])
        self.events.append(message)
        del self.events[:-200]

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            stop_process(self.process, 10)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- page -------------------------------------------------------------------------------------

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout=30)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(
                f"{expression[:80]}: {result['exceptionDetails'].get('text')} "
                f"{result['exceptionDetails'].get('exception', {}).get('description', '')}"
            )
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.2, what: str | None = None):
        """Wait until a JavaScript expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(
            f"waited {timeout} s for {what or expression!r}; last value {value!r}; console: {self.console[-5:]}"
        )

    def rect(self, selector: str, index: int = 0) -> dict:
        """The bounding box (CSS pixels) of the ``index``-th element matching ``selector``."""
        rect = self.evaluate(
            f"(() => {{ const e = document.querySelectorAll({json.dumps(selector)})[{int(index)}]; if (!e) return null;"
            " e.scrollIntoView({block: 'nearest', inline: 'nearest'});"
            " const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"
        )
        if not rect:
            raise CdpError(f"no element matches {selector!r}")
        return rect

    def text(self, selector: str) -> str:
        return self.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''")

    # -- input ------------------------------------------------------------------------------------

    def mouse(self, kind: str, x: float, y: float, button: str = "none", buttons: int = 0, **extra) -> None:
        self.send(
            "Input.dispatchMouseEvent",
            type=kind,
            x=float(x),
            y=float(y),
            button=button,
            buttons=buttons,
            clickCount=1 if kind in ("mousePressed", "mouseReleased") else 0,
            **extra,
        )

    def click(self, selector: str, index: int = 0) -> None:
        """A real left click in the middle of the (``index``-th) element matching ``selector``."""
        r = self.rect(selector, index)
        x, y = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, "left", 1)
        self.mouse("mouseReleased", x, y, "left", 0)

    def drag(self, points, pause: float = 0.03) -> None:
        """Press the left button at the first point, move through the others, release at the last."""
        (x0, y0), *rest = points
        self.mouse("mouseMoved", x0, y0)
        time.sleep(pause)
        self.mouse("mousePressed", x0, y0, "left", 1)
        for x, y in rest:
            time.sleep(pause)
            self.mouse("mouseMoved", x, y, "left", 1)
        time.sleep(pause)
        self.mouse("mouseReleased", *(rest[-1] if rest else (x0, y0)), "left", 0)

    def fill(self, selector: str, text: str) -> None:
        """Replace the text of an input as a user would: focus, select all, type."""
        self.click(selector)
        self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select(); }})()"
        )
        self.send("Input.insertText", text=str(text))
        self.send("Input.dispatchKeyEvent", type="keyDown", key="Tab", code="Tab", windowsVirtualKeyCode=9)
        self.send("Input.dispatchKeyEvent", type="keyUp", key="Tab", code="Tab", windowsVirtualKeyCode=9)

    def set_files(self, selector: str, paths) -> None:
        """Choose files in an ``<input type=file>`` (fires its change event, like the file dialog)."""
        root = self.send("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise CdpError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", nodeId=node, files=[os.fspath(p) for p in paths])

    # -- pictures ---------------------------------------------------------------------------------

    def screenshot(self, path: str | os.PathLike | None = None, selector: str | None = None) -> bytes:
        """A PNG of the page (or of one element's box); written to ``path`` when given."""
        params = {"format": "png", "captureBeyondViewport": False}
        if selector:
            r = self.rect(selector)
            params["clip"] = {"x": r["x"], "y": r["y"], "width": r["width"], "height": r["height"], "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", **params)["data"])
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        return data
