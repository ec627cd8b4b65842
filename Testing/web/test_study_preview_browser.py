"""Live results of a study in a real browser (headless Chromium over the DevTools protocol): while a study of two
volumes trains, the engine's previews (docs/JOB_FORMAT.md: preview 0 of every labelled volume, then one volume's at a
time, in turn) show in the page: the review list across both volumes, the shown volume's pseudo-label and confidence
layers with the "preview at iteration N — preliminary" marker, and the progress line naming each volume's preview; a
preview of the other volume leaves the shown one in the views; the final results replace them all.

The server is the real ``semiseg serve`` with its jobs run by the fake engine's preview mode (``fakeserve.py``; real
preview files, written as the engine writes them), gated so that the test sees each preview before the next one comes.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_e2e_browser import Page, _changed, _chroma

from cdp import Browser
from webtesting import (
    cancel_shows_the_last_results_again,
    console_exceptions,
    fake_engine_server,
    final_results,
    fresh_screenshots,
    mark_two_volume_study,
    open_gate,
    review_rows,
    shown_volume,
    synthetic_volume,
    wait_done,
    wait_rows,
)

SHAPES = {"alpha": (8, 48, 40), "beta": (6, 40, 40)}
ROW_COUNT = sum(shape[0] for shape in SHAPES.values())


@pytest.fixture
def server(tmp_path):
    volumes = [synthetic_volume(tmp_path / f"{name}.nrrd", shape=shape) for name, shape in SHAPES.items()]
    fake = {"mode": "preview", "previews": 3, "gate": True, "every": 10}
    with fake_engine_server(tmp_path, volumes, fake) as process:
        yield process


def _running(browser) -> bool:
    return not browser.evaluate("document.querySelector('#cancel-button').disabled")


def _startStudy(page, server) -> np.ndarray:
    """The served volumes' page (alpha shown); both volumes in the study, a slice checked (labelled, empty) in each,
    beta shown; train the study. Returns the slice view before."""
    b = page.b
    b.navigate(server.url)
    page.wait_text("#volume-name", "alpha", timeout=60)
    b.wait_for("document.querySelectorAll('#volumes tr').length >= 2", timeout=30, what="the volume list")
    mark_two_volume_study(page)
    b.fill("#iterations", "30")
    b.fill("#size", "32")
    before = page.settled_view()
    assert b.evaluate("document.querySelector('#preview-marker') === null")
    b.click("#train-study-button")
    return before


def test_study_previews_show_in_the_page_while_the_study_trains(server, chromium_path):
    shots = fresh_screenshots("study-preview")
    with Browser(chromium_path, width=1280, height=900) as browser:
        page = Page(browser, shots)
        b = browser
        before = _startStudy(page, server)  # beta shown when the study starts

        # Preview 0 of both volumes: one review list across them, beta's layers in the view, marked preliminary.
        page.wait_text("#progress-text", "previews of alpha (iteration 0), beta (iteration 0) — preliminary",
                       timeout=60)
        page.wait_text("#preview-marker", "preview at iteration 0 — preliminary")
        b.wait_for(f"document.querySelectorAll('#review-table tbody tr').length === {ROW_COUNT}", timeout=30,
                   what="the review list of both previews")
        rows = review_rows(b)
        assert [r[:2] for r in rows[:2]] == [["0", "alpha"], ["0", "beta"]], rows
        assert {r[1] for r in rows} == {"alpha", "beta"}
        assert _running(b), "the study is not training"
        assert b.evaluate("document.querySelector('#accept-button').disabled"), "a preview slice can be accepted"
        assert shown_volume(b) == "beta"
        betaPreview = page.settled_view(before)
        page.shot("previews-0")
        assert _changed(betaPreview, before) > 0.2, "the preview's confidence layer did not change the slice view"
        assert _chroma(betaPreview) > _chroma(before) + 5, "no coloured layer in the slice view"

        # Preview 1, of alpha (iteration 10): its rows in the list change; beta stays shown, as it was.
        open_gate(server)
        page.wait_text("#progress-text", "previews of alpha (iteration 10), beta (iteration 0)", timeout=60)
        b.wait_for("document.querySelector('#review-table tbody td').innerText === '1'", timeout=30,
                   what="alpha's rows of its second preview")
        assert review_rows(b)[0][:2] == ["1", "alpha"] and len(review_rows(b)) == ROW_COUNT
        assert shown_volume(b) == "beta" and "of 0-5" in b.text("#current-slice")
        assert "preview at iteration 0 — preliminary" in b.text("#preview-marker")
        assert _changed(page.settled_view(), betaPreview) < 0.002, "another volume's preview changed the view"

        # alpha shown: its preview of iteration 10
        b.click("#volume-0")
        page.wait_text("#current-slice", "of 0-7")
        page.wait_text("#preview-marker", "preview at iteration 10 — preliminary")
        alphaPreview = page.settled_view(betaPreview)
        page.shot("alpha-preview-10")
        assert _chroma(alphaPreview) > _chroma(before) + 5, "no coloured layer in alpha's view"

        # Preview 2, of beta (iteration 20): alpha stays shown.
        open_gate(server)
        page.wait_text("#progress-text", "previews of alpha (iteration 10), beta (iteration 20)", timeout=60)
        assert shown_volume(b) == "alpha" and "of 0-7" in b.text("#current-slice")
        assert "preview at iteration 10 — preliminary" in b.text("#preview-marker")
        assert _running(b)

        # Training ends: the final results replace the previews; the marker goes.
        final = final_results(page, server, alphaPreview)
        rows = review_rows(b)
        assert len(rows) == ROW_COUNT and [r[:2] for r in rows[:2]] == [["0", "alpha"], ["0", "beta"]], rows
        assert _changed(final, alphaPreview) > 0.002
        errors = console_exceptions(b)
    assert not errors, errors


def test_a_cancelled_study_retrain_shows_the_last_results_again_in_the_page(server, chromium_path):
    """A study's retrain shows its previews, then is cancelled: the review list across both volumes, the shown
    volume's layers and the marker are the last results' again (``Progress.restored``; the page follows)."""
    shots = fresh_screenshots("study-preview-cancelled")
    with Browser(chromium_path, width=1280, height=900) as browser:
        page = Page(browser, shots)
        b = browser
        before = _startStudy(page, server)
        for progress in ("previews of alpha (iteration 0), beta (iteration 0)",  # the first round, to its results
                         "previews of alpha (iteration 10), beta (iteration 0)",
                         "previews of alpha (iteration 10), beta (iteration 20)"):
            page.wait_text("#progress-text", progress, timeout=60)
            open_gate(server)
        wait_done(page)
        final = page.settled_view(before)
        finalRows = review_rows(b)
        assert len(finalRows) == ROW_COUNT and shown_volume(b) == "beta"
        page.shot("final")

        # The retrain's previews: their review list, beta's preview layers and the marker.
        b.click("#retrain-button")
        page.wait_text("#progress-text", "previews of alpha (iteration 0), beta (iteration 0) — preliminary",
                       timeout=60)
        page.wait_text("#preview-marker", "preview at iteration 0 — preliminary")
        wait_rows(b, finalRows, False, "the review list of the retrain's previews")
        preview = page.settled_view(final)
        page.shot("retrain-previews")

        # Cancelled: the last results are shown again, rows and layers; the marker goes.
        restored = cancel_shows_the_last_results_again(page, finalRows, preview, "the last results' review list")
        assert shown_volume(b) == "beta"
        assert _changed(restored, final) < 0.002, "the view does not show the last results' layers again"
        errors = console_exceptions(b)
    assert not errors, errors
