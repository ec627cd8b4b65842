"""Live results in a real browser (headless Chromium over the DevTools protocol): while training runs, each
``preview`` event of the engine shows in the page (the pseudo-label and confidence layers in the slice view,
the review list, a "preview at iteration N — preliminary" marker), and the final result replaces it.

The server is the real ``semiseg serve`` with its training jobs run by the fake engine's preview mode
(``fakeserve.py``; real preview files, written as the engine writes them), gated so that the test sees each
preview before the next one comes: the real engine's previews come at its own pace.
"""

from __future__ import annotations

import pytest
from test_e2e_browser import Page, _changed, _chroma

from cdp import Browser
from webtesting import (
    cancel_shows_the_last_results_again,
    console_exceptions,
    fake_engine_server,
    final_results,
    fresh_screenshots,
    open_gate,
    review_rows,
    synthetic_volume,
    wait_done,
    wait_rows,
)

SLICES = 8


@pytest.fixture
def server(tmp_path):
    volume = synthetic_volume(tmp_path / "disc.nrrd", shape=(SLICES, 48, 40))
    fake = {"mode": "preview", "previews": 2, "gate": True, "every": 10}
    with fake_engine_server(tmp_path, [volume], fake) as process:
        yield process


def _rows(browser) -> list[str]:
    cells = "document.querySelectorAll('#review-table tbody tr td:first-child')"
    return browser.evaluate(f"[...{cells}].map(e => e.innerText)")


def _labelOneSlice(page, server):
    """The served volume's page, one slice checked (labelled, empty: enough to train), a short training set up;
    returns the slice view."""
    browser = page.b
    browser.navigate(server.url)
    page.wait_text("#volume-name", "disc", timeout=60)
    page.wait_text("#current-slice", f"of 0-{SLICES - 1}")
    browser.click("#mark-checked")
    page.wait_text("#labeled-slices", "Labelled slices along K")
    browser.fill("#iterations", "20")
    browser.fill("#size", "32")
    return page.settled_view()


def test_previews_show_in_the_page_while_training_runs(server, chromium_path):
    shots = fresh_screenshots("preview")
    with Browser(chromium_path, width=1280, height=860) as browser:
        page = Page(browser, shots)
        before = _labelOneSlice(page, server)
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
        open_gate(server)
        page.wait_text("#preview-marker", "preview at iteration 10 — preliminary", timeout=60)
        browser.wait_for("document.querySelector('#review-table tbody td').innerText === '1'", timeout=30,
                         what="the review list of the second preview")
        second = page.settled_view(first)
        page.shot("preview-10")
        assert _changed(second, first) > 0.05, "the second preview did not change the slice view"
        assert not browser.evaluate("document.querySelector('#cancel-button').disabled"), "training is not running"

        # Training ends: the final result replaces the preview; the marker goes.
        final = final_results(page, server, second)
        assert _rows(browser)[:2] == ["0", "1"] and len(_rows(browser)) == SLICES
        assert _changed(final, second) > 0.002
        errors = console_exceptions(browser)
    assert not errors, errors


def test_a_cancelled_retrain_shows_the_last_result_again_in_the_page(server, chromium_path):
    """A retrain shows its preview, then is cancelled: the review list, the layers and the marker are the last
    result's again (the session restores it, ``Progress.restored``; the page follows)."""
    shots = fresh_screenshots("preview-cancelled")
    with Browser(chromium_path, width=1280, height=860) as browser:
        page = Page(browser, shots)
        before = _labelOneSlice(page, server)
        browser.click("#train-button")
        for iteration in (0, 10):  # the first round, through its previews to its final result
            page.wait_text("#preview-marker", f"preview at iteration {iteration} — preliminary", timeout=60)
            open_gate(server)
        wait_done(page)
        final = page.settled_view(before)
        finalRows = review_rows(browser)
        assert len(finalRows) == SLICES
        page.shot("final")

        # The retrain's preview: its review list, its layers and the marker.
        browser.click("#retrain-button")
        page.wait_text("#preview-marker", "preview at iteration 0 — preliminary", timeout=60)
        wait_rows(browser, finalRows, False, "the review list of the retrain's preview")
        preview = page.settled_view(final)
        page.shot("retrain-preview")

        # Cancelled: the last result is shown again, rows and layers; the marker goes.
        restored = cancel_shows_the_last_results_again(page, finalRows, preview, "the last result's review list")
        assert _changed(restored, final) < 0.002, "the view does not show the last result's layers again"
        errors = console_exceptions(browser)
    assert not errors, errors
