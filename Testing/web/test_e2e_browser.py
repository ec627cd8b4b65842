"""The whole workflow in a real browser (headless Chromium over the DevTools protocol) against
``semiseg serve`` started on a free local port:

load an ACDC volume from the page, paint two slices with the brush, train a few iterations
(method chosen in the page), see the engine's preview marked preliminary while it trains, see the progress
reach 100 % and the final result replace the preview, see the pseudo-label and confidence layers
in the slice view (screenshot pixels, not the DOM), jump to the least confident slice, accept it, and
check in the labels exported from the server's scene that exactly that slice changed, to the
pseudo-labels; then retrain and cancel. Screenshots of every step go to ``Testing/web/screenshots/``
(ignored by git). The README's image is made from one of them by a separate command,
``python Testing/web/readme_screenshot.py``: the test run never rewrites a tracked file.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cdp import Browser
from webtesting import DATA, RESULTS_SCREENSHOT, SCREENSHOTS, ServerProcess, console_exceptions

CASE = DATA / "acdc" / "images" / "patient003_frame01.nii.gz"
VIEW = "#views"


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _changed(a: np.ndarray, b: np.ndarray, level: int = 24) -> float:
    """Fraction of pixels whose colour changed by more than ``level`` in some channel."""
    return float(np.mean(np.abs(a - b).max(axis=2) > level))


def _colourful(a: np.ndarray, level: int = 40) -> float:
    """Fraction of pixels with a clear colour (not grey): labels, not the MRI."""
    return float(np.mean(a.max(axis=2) - a.min(axis=2) > level))


def _chroma(a: np.ndarray) -> float:
    """Mean colourfulness (max - min channel): a tint over the whole view raises it."""
    return float(np.mean(a.max(axis=2) - a.min(axis=2)))


def _read_labels(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (K, J, I)


class Page:
    """The page under test: the browser plus the few things the steps share."""

    def __init__(self, browser: Browser, shots: Path):
        self.b = browser
        self.shots = shots
        self.step = 0

    def shot(self, name: str) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{name}.png"
        self.b.screenshot(path)
        return path

    def view(self) -> np.ndarray:
        return _pixels(self.b.screenshot(selector=VIEW))

    def settled_view(self, previous: np.ndarray | None = None, timeout: float = 30.0, min_change: float = 0.002):
        """The slice view once its streamed image stopped changing (and differs from ``previous``)."""
        deadline = time.monotonic() + timeout
        last = self.view()
        while time.monotonic() < deadline:
            time.sleep(0.4)
            current = self.view()
            moved = previous is None or _changed(current, previous) > min_change
            if moved and _changed(current, last) == 0.0:
                return current
            last = current
        if previous is not None:
            raise AssertionError(f"the slice view did not change within {timeout} s")
        return last

    def paint(self, centre, radius: float) -> None:
        """A filled disc of brush strokes around ``centre`` (fractions of the view's box)."""
        r = self.b.rect(VIEW)
        cx, cy = r["x"] + centre[0] * r["width"], r["y"] + centre[1] * r["height"]
        for dy in np.linspace(-radius, radius, 5):
            half = np.sqrt(max(radius**2 - dy**2, 0.0))
            points = [(cx + dx, cy + dy) for dx in np.linspace(-half, half, 8)]
            self.b.drag(points)
            time.sleep(0.2)

    def choose(self, select: str, title: str) -> None:
        """Pick ``title`` in a Vuetify select, as a user does: open the menu, click the item."""
        items = ".v-overlay--active .v-list-item"
        self.b.click(select)
        find = (f"[...document.querySelectorAll({json.dumps(items)})]"
                f".findIndex(e => e.innerText.trim() === {json.dumps(title)})")
        try:
            index = self.b.wait_for(f"{find} + 1", timeout=10, what=f"{title!r} in the menu of {select}") - 1
        except TimeoutError:
            offered = self.b.evaluate(f"[...document.querySelectorAll({json.dumps(items)})].map(e => e.innerText)")
            raise AssertionError(f"{title!r} is not offered by {select}: {offered}") from None
        previous, deadline = None, time.monotonic() + 10
        while time.monotonic() < deadline:  # the menu grows in: click once it stopped moving
            rect = self.b.rect(items, index)
            if rect == previous:
                break
            previous = rect
            time.sleep(0.15)
        self.b.click(items, index)
        self.b.wait_for(f"document.querySelectorAll({json.dumps(items)}).length === 0", timeout=10)
        self.b.wait_for(
            f"document.querySelector({json.dumps(select)}).value === {json.dumps(title)}",
            timeout=10,
            what=f"{select} to show {title!r}",
        )

    def save_labels(self, path: Path) -> np.ndarray:
        """Press "Save labels" and read what the server exported from its scene."""
        if path.exists():
            path.unlink()
        self.b.click("#save-button")
        self.wait_text("#message", "Saved your labels")
        return _read_labels(path)

    def wait_text(self, selector: str, contains: str, timeout: float = 30.0) -> str:
        return self.b.wait_for(
            f"(() => {{ const t = (document.querySelector({json.dumps(selector)}) || {{}}).innerText || '';"
            f" return t.includes({json.dumps(contains)}) ? t : null; }})()",
            timeout=timeout,
            what=f"{selector} to contain {contains!r}",
        )


@pytest.fixture
def server(tmp_path):
    if not CASE.is_file():
        pytest.fail(f"real ACDC data missing at {CASE}: the tests need ../shared/data beside the checkout")
    with ServerProcess(
        ["--segments", "left ventricle", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "out"]
    ) as process:
        process.tmp = tmp_path
        yield process
        print("---- semiseg serve output ----\n" + process.output(200))


def test_label_train_review_accept_in_the_browser(server, chromium_path):
    shots = SCREENSHOTS
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    with Browser(chromium_path, width=1440, height=1000) as browser:
        page = Page(browser, shots)
        browser.send("Network.enable")
        browser.navigate(server.url)
        browser.wait_for("document.querySelector('#views img') !== null", timeout=60, what="the slice view")

        # Load an ACDC volume through the page's file input (uploaded to the server in chunks).
        browser.set_files("#load-volume input[type=file]:not([webkitdirectory])", [CASE])
        page.wait_text("#volume-name", "patient003_frame01", timeout=60)
        page.wait_text("#current-slice", "of 0-9")
        loaded = page.settled_view()
        page.shot("loaded")

        # Paint the left ventricle on two slices; both count as labelled.
        first = int(browser.text("#current-slice").split()[1])
        browser.click("#segment-0")
        browser.click("#tool-paint")
        page.wait_text("#message", "Opened")
        page.paint((0.475, 0.52), 28)
        page.wait_text("#labeled-slices", f"Labelled slices along K: {first}")
        painted = page.settled_view(loaded)
        assert _colourful(painted) > _colourful(loaded) + 0.002, "the brush stroke is not visible in the slice view"
        browser.click("#next-slice")
        browser.click("#next-slice")
        second = first + 2
        page.wait_text("#current-slice", f"Slice {second} ")
        page.paint((0.475, 0.52), 26)
        page.wait_text("#labeled-slices", f"Labelled slices along K: {first}, {second}")
        page.shot("painted-two-slices")
        browser.click("#tool-none")

        # Train: method, a tiny budget on the CPU, progress to 100 %, the curves.
        page.choose("#method", "FixMatch")
        browser.fill("#iterations", "150")
        browser.fill("#size", "64")
        page.choose("#device", "cpu")
        before = page.settled_view()
        browser.click("#train-button")
        page.wait_text("#progress-text", "Iteration", timeout=120)
        # The engine's first preview (the interpolation of the painted slices) shows while it trains.
        page.wait_text("#preview-marker", "preliminary", timeout=120)
        page.shot("training")
        page.wait_text("#progress-percent", "100 %", timeout=240)
        page.wait_text("#progress-text", "Done", timeout=120)
        browser.wait_for(
            "document.querySelectorAll('#review-table tbody tr').length === 10", timeout=60, what="the review list"
        )
        browser.wait_for(
            "document.querySelector('#preview-marker') === null",
            timeout=10,
            what="the final result to replace the preview",
        )
        assert browser.evaluate("document.querySelector('#loss-curve').getAttribute('points').split(' ').length") >= 2

        # The confidence layer appears in the slice view (pixels, not the DOM).
        results = page.settled_view(before)
        page.shot("results")
        assert (shots / RESULTS_SCREENSHOT).is_file(), "readme_screenshot.py copies this one"
        assert _changed(results, before) > 0.2, "the confidence overlay did not change the slice view"
        assert _chroma(results) > _chroma(before) + 5, "no coloured (Viridis) overlay in the slice view"

        # The pseudo-label layer is in the view too: the model labels the slice it was shown (the
        # second painted one), and hiding the layer changes those pixels.
        predicted = _read_labels(next((server.tmp / "cache").glob("job-*/run/predictions/image/labels.*")))
        assert predicted[second].sum() > 50, f"the model predicted {predicted[second].sum()} voxels on a painted slice"
        browser.click("#show-pseudo")
        no_pseudo = page.settled_view(results)
        assert _changed(no_pseudo, results) > 0.002, "hiding the pseudo-labels changed nothing in the slice view"
        browser.click("#show-pseudo")
        assert _changed(page.settled_view(no_pseudo), results) < 0.002, (
            "showing the pseudo-labels again did not restore the view"
        )

        # Jump to the least confident slice.
        least = int(browser.text("#review-table tbody tr:first-child td:first-child"))
        browser.click("#review-table tbody tr", 0)
        page.wait_text("#current-slice", f"Slice {least} ")
        page.wait_text("#message", f"Slice {least}: confidence")
        at_least = page.settled_view(None if least == second else results)
        page.shot("least-confident-slice")

        # Correct it with the brush on the pseudo-labels: add a disc away from the ventricle, where the
        # model predicted nothing (a stroke over its own prediction would change no pixel).
        browser.click("#edit-pseudo")
        browser.click("#tool-paint")
        time.sleep(0.5)
        page.paint((0.3, 0.3), 30)
        corrected = page.settled_view(at_least)
        browser.click("#tool-none")
        page.shot("corrected")

        # Each layer is in the view: turning it off changes the pixels.
        browser.click("#show-confidence")
        no_confidence = page.settled_view(corrected)
        assert _changed(no_confidence, corrected) > 0.2, "turning the confidence layer off changed nothing"
        browser.click("#show-pseudo")
        plain = page.settled_view(no_confidence)
        assert _changed(plain, no_confidence) > 0.002, "turning the pseudo-labels off changed nothing"
        browser.click("#show-pseudo")
        page.settled_view(plain)
        browser.click("#show-confidence")
        page.settled_view(no_confidence)
        browser.click("#edit-pseudo")

        # Accept it: exactly that slice of the user's labels changes, to the corrected pseudo-labels.
        saved = server.tmp / "out" / "patient003_frame01_labels.nii.gz"
        labels_before = page.save_labels(saved)
        browser.click("#accept-button")
        page.wait_text("#message", f"Slice {least} copied")
        page.wait_text("#labeled-slices", str(least))
        page.shot("accepted")
        labels_after = page.save_labels(saved)
        changed = sorted({int(k) for k in np.nonzero(labels_after != labels_before)[0]})
        assert changed == [least], f"accepting slice {least} changed slices {changed}"
        accepted = labels_after[least] > 0
        assert np.all(accepted[predicted[least] > 0]), "the model's pseudo-labels were not all accepted"
        assert accepted.sum() > (predicted[least] > 0).sum(), "the brush correction was not accepted"
        info = json.loads(saved.with_name("patient003_frame01_labels.json").read_text())
        assert {first, second, least} <= set(info["labeled_slices"])

        # Retrain warm-started, then cancel: the run stops and the labels are left as they were.
        browser.fill("#iterations", "5000")
        browser.click("#retrain-button")
        browser.wait_for("!document.querySelector('#cancel-button').disabled", timeout=30, what="Cancel enabled")
        time.sleep(3)
        browser.click("#cancel-button")
        page.wait_text("#progress-text", "cancelled", timeout=60)
        page.shot("cancelled")

        requests = list(browser.requests)
        errors = console_exceptions(browser)
    assert not errors, errors
    foreign = [url for url in requests if not url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))]
    assert not foreign, f"the page fetched from elsewhere: {foreign[:5]}"
