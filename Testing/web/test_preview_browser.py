"""Live results in a real browser (headless Chromium over the DevTools protocol): while training runs, each
``preview`` event of the engine shows in the page (the pseudo-label and confidence layers in the slice view,
the review list, a "preview at iteration N — preliminary" marker), and the final result replaces it.

The server is the real ``semiseg serve`` with its training jobs run by the fake engine's preview mode
(``fakeserve.py``; real preview files, written as the engine writes them), gated so that the test sees each
preview before the next one comes: the real engine's previews come at its own pace.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from test_e2e_browser import Page, _changed, _chroma

from cdp import Browser
from webtesting import HERE, SCREENSHOTS, ServerProcess, server_environment, synthetic_volume

SLICES = 8


@pytest.fixture
def server(tmp_path):
    volume = synthetic_volume(tmp_path / "disc.nrrd", shape=(SLICES, 48, 40))
    env = server_environment()
    env["FAKE_ENGINE"] = json.dumps({"mode": "preview", "previews": 2, "gate": True, "every": 10})
    args = [volume, "--segments", "disc", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "out"]
    with ServerProcess(args, env=env, launcher=[sys.executable, HERE / "fakeserve.py", tmp_path / "fake"]) as process:
        process.tmp = tmp_path
        yield process
        print("---- semiseg serve output ----\n" + process.output(200))


def _openGate(server) -> None:
    """Let the fake engine go on from the preview it waits at (the newest job's: a retrain is a second job)."""
    runs = sorted((server.tmp / "cache").glob("job-*/run"))  # job-<date>-<time>-<n>: in the order they were made
    assert runs, "no job"
    (runs[-1] / "go").write_text("")


def _rows(browser) -> list[str]:
    cells = "document.querySelectorAll('#review-table tbody tr td:first-child')"
    return browser.evaluate(f"[...{cells}].map(e => e.innerText)")


ROWS = "[...document.querySelectorAll('#review-table tbody tr')].map(r => [...r.cells].map(c => c.innerText))"


def _waitRows(browser, rows, equal: bool, what: str) -> None:
    """Wait until the review list's rows (every cell) are ``rows`` (``equal``), or are other rows."""
    same = f"JSON.stringify({ROWS}) === {json.dumps(json.dumps(rows, separators=(',', ':'), ensure_ascii=False))}"
    browser.wait_for(same if equal else f"({ROWS}).length > 0 && !({same})", timeout=30, what=what)


def test_previews_show_in_the_page_while_training_runs(server, chromium_path):
    shots = SCREENSHOTS / "preview"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    with Browser(chromium_path, width=1280, height=860) as browser:
        page = Page(browser, shots)
        browser.navigate(server.url)
        page.wait_text("#volume-name", "disc", timeout=60)
        page.wait_text("#current-slice", f"of 0-{SLICES - 1}")
        browser.click("#mark-checked")  # one slice checked (labelled, empty): enough to train
        page.wait_text("#labeled-slices", "Labelled slices along K")
        browser.fill("#iterations", "20")
        browser.fill("#size", "32")
        before = page.settled_view()
        assert browser.evaluate("document.querySelector('#preview-marker') === null")
        browser.click("#train-button")

        # The first preview (iteration 0): layers, review list and the preliminary marker, training still running.
        page.wait_text("#preview-marker", "preview at iteration 0 — preliminary", timeout=60)
        browser.wait_for(f"document.querySelectorAll('#review-table tbody tr').length === {SLICES}", timeout=30,
                         what="the review list of the preview")
        assert _rows(browser)[:2] == ["0", "1"]
        assert "preliminary" in browser.text("#progress-text")
        assert not browser.evaluate("document.querySelector('#cancel-button').disabled"), "training is not running"
        assert browser.evaluate("document.querySelector('#accept-button').disabled"), "a preview slice can be accepted"
        first = page.settled_view(before)
        page.shot("preview-0")
        assert _changed(first, before) > 0.2, "the preview's confidence layer did not change the slice view"
        assert _chroma(first) > _chroma(before) + 5, "no coloured layer in the slice view"
        browser.click("#show-pseudo")  # the pseudo-label layer is in the view: hiding it changes the pixels
        hidden = page.settled_view(first)
        browser.click("#show-pseudo")
        assert _changed(page.settled_view(hidden), first) < 0.002

        # The next preview (iteration 10) replaces it: a larger disc, another confidence, another review order.
        _openGate(server)
        page.wait_text("#preview-marker", "preview at iteration 10 — preliminary", timeout=60)
        browser.wait_for("document.querySelector('#review-table tbody td').innerText === '1'", timeout=30,
                         what="the review list of the second preview")
        second = page.settled_view(first)
        page.shot("preview-10")
        assert _changed(second, first) > 0.05, "the second preview did not change the slice view"
        assert not browser.evaluate("document.querySelector('#cancel-button').disabled"), "training is not running"

        # Training ends: the final result replaces the preview; the marker goes.
        _openGate(server)
        page.wait_text("#progress-text", "Done", timeout=60)
        browser.wait_for("document.querySelector('#preview-marker') === null", timeout=30, what="the marker to go")
        assert "preliminary" not in browser.text("#progress-text")
        assert _rows(browser)[:2] == ["0", "1"] and len(_rows(browser)) == SLICES
        final = page.settled_view(second)
        page.shot("final")
        assert _changed(final, second) > 0.002
        errors = [line for line in browser.console if line.startswith("exception")]
    assert not errors, errors


def test_a_cancelled_retrain_shows_the_last_result_again_in_the_page(server, chromium_path):
    """A retrain shows its preview, then is cancelled: the review list, the layers and the marker are the last
    result's again (the session restores it, ``Progress.restored``; the page follows)."""
    shots = SCREENSHOTS / "preview-cancelled"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    with Browser(chromium_path, width=1280, height=860) as browser:
        page = Page(browser, shots)
        browser.navigate(server.url)
        page.wait_text("#volume-name", "disc", timeout=60)
        page.wait_text("#current-slice", f"of 0-{SLICES - 1}")
        browser.click("#mark-checked")
        page.wait_text("#labeled-slices", "Labelled slices along K")
        browser.fill("#iterations", "20")
        browser.fill("#size", "32")
        before = page.settled_view()
        browser.click("#train-button")
        for iteration in (0, 10):  # the first round, through its previews to its final result
            page.wait_text("#preview-marker", f"preview at iteration {iteration} — preliminary", timeout=60)
            _openGate(server)
        page.wait_text("#progress-text", "Done", timeout=60)
        browser.wait_for("document.querySelector('#preview-marker') === null", timeout=30, what="the marker to go")
        final = page.settled_view(before)
        finalRows = browser.evaluate(ROWS)
        assert len(finalRows) == SLICES
        page.shot("final")

        # The retrain's preview: its review list, its layers and the marker.
        browser.click("#retrain-button")
        page.wait_text("#preview-marker", "preview at iteration 0 — preliminary", timeout=60)
        _waitRows(browser, finalRows, False, "the review list of the retrain's preview")
        preview = page.settled_view(final)
        page.shot("retrain-preview")

        # Cancelled: the last result is shown again, rows and layers; the marker goes.
        browser.click("#cancel-button")
        page.wait_text("#progress-text", "cancelled", timeout=60)
        assert "The last results are shown again" in browser.text("#progress-text")
        browser.wait_for("document.querySelector('#preview-marker') === null", timeout=30, what="the marker to go")
        _waitRows(browser, finalRows, True, "the last result's review list")
        restored = page.settled_view(preview)
        page.shot("cancelled")
        assert _changed(restored, final) < 0.002, "the view does not show the last result's layers again"
        errors = [line for line in browser.console if line.startswith("exception")]
    assert not errors, errors
