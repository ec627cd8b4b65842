"""Live results of a study in a real browser (headless Chromium over the DevTools protocol): while a study of two
volumes trains, the engine's previews (docs/JOB_FORMAT.md: preview 0 of every labelled volume, then one volume's at a
time, in turn) show in the page: the review list across both volumes, the shown volume's pseudo-label and confidence
layers with the "preview at iteration N — preliminary" marker, and the progress line naming each volume's preview; a
preview of the other volume leaves the shown one in the views; the final results replace them all.

The server is the real ``semiseg serve`` with its jobs run by the fake engine's preview mode (``fakeserve.py``; real
preview files, written as the engine writes them), gated so that the test sees each preview before the next one comes.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from test_e2e_browser import Page, _changed, _chroma
from test_preview_browser import ROWS, _waitRows

from cdp import Browser
from webtesting import HERE, SCREENSHOTS, ServerProcess, server_environment, synthetic_volume

SHAPES = {"alpha": (8, 48, 40), "beta": (6, 40, 40)}


@pytest.fixture
def server(tmp_path):
    volumes = [synthetic_volume(tmp_path / f"{name}.nrrd", shape=shape) for name, shape in SHAPES.items()]
    env = server_environment()
    env["FAKE_ENGINE"] = json.dumps({"mode": "preview", "previews": 3, "gate": True, "every": 10})
    args = [*volumes, "--segments", "disc", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "out"]
    with ServerProcess(args, env=env, launcher=[sys.executable, HERE / "fakeserve.py", tmp_path / "fake"]) as process:
        process.tmp = tmp_path
        yield process
        print("---- semiseg serve output ----\n" + process.output(200))


def _openGate(server) -> None:
    """Let the fake engine go on from the preview it waits at (the newest job's: a retrain is a second job)."""
    runs = sorted((server.tmp / "cache").glob("job-*/run"))  # job-<date>-<time>-<n>: in the order they were made
    assert runs, "no job"
    (runs[-1] / "go").write_text("")


def _rows(browser) -> list[list[str]]:
    return browser.evaluate(
        "[...document.querySelectorAll('#review-table tbody tr')].map(r => [...r.cells].map(c => c.innerText))"
    )


def _shown(browser) -> str:
    return browser.evaluate("(document.querySelector('#volumes tr.shown td.volume-name') || {}).innerText || ''")


def _running(browser) -> bool:
    return not browser.evaluate("document.querySelector('#cancel-button').disabled")


def _startStudy(page) -> np.ndarray:
    """Both volumes in the study, a slice checked (labelled, empty) in each, beta shown; train the study. Returns the
    slice view before."""
    b = page.b
    b.wait_for("document.querySelectorAll('#volumes tr').length >= 2", timeout=30, what="the volume list")
    b.click("#study-check-0")
    b.click("#study-check-1")
    page.wait_text("#study-text", "2 volumes in the study")
    b.click("#mark-checked")
    page.wait_text("#volume-info-0", "1 labelled")
    b.click("#volume-1")
    page.wait_text("#current-slice", "of 0-5")
    b.click("#mark-checked")
    page.wait_text("#volume-info-1", "1 labelled")
    b.fill("#iterations", "30")
    b.fill("#size", "32")
    before = page.settled_view()
    assert b.evaluate("document.querySelector('#preview-marker') === null")
    b.click("#train-study-button")
    return before


def test_study_previews_show_in_the_page_while_the_study_trains(server, chromium_path):
    shots = SCREENSHOTS / "study-preview"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    rowCount = sum(shape[0] for shape in SHAPES.values())
    with Browser(chromium_path, width=1280, height=900) as browser:
        page = Page(browser, shots)
        b = browser
        b.navigate(server.url)
        page.wait_text("#volume-name", "alpha", timeout=60)
        before = _startStudy(page)  # beta shown when the study starts

        # Preview 0 of both volumes: one review list across them, beta's layers in the view, marked preliminary.
        page.wait_text("#progress-text", "previews of alpha (iteration 0), beta (iteration 0) — preliminary",
                       timeout=60)
        page.wait_text("#preview-marker", "preview at iteration 0 — preliminary")
        b.wait_for(f"document.querySelectorAll('#review-table tbody tr').length === {rowCount}", timeout=30,
                   what="the review list of both previews")
        rows = _rows(b)
        assert [r[:2] for r in rows[:2]] == [["0", "alpha"], ["0", "beta"]], rows
        assert {r[1] for r in rows} == {"alpha", "beta"}
        assert _running(b), "the study is not training"
        assert b.evaluate("document.querySelector('#accept-button').disabled"), "a preview slice can be accepted"
        assert _shown(b) == "beta"
        betaPreview = page.settled_view(before)
        page.shot("previews-0")
        assert _changed(betaPreview, before) > 0.2, "the preview's confidence layer did not change the slice view"
        assert _chroma(betaPreview) > _chroma(before) + 5, "no coloured layer in the slice view"

        # Preview 1, of alpha (iteration 10): its rows in the list change; beta stays shown, as it was.
        _openGate(server)
        page.wait_text("#progress-text", "previews of alpha (iteration 10), beta (iteration 0)", timeout=60)
        b.wait_for("document.querySelector('#review-table tbody td').innerText === '1'", timeout=30,
                   what="alpha's rows of its second preview")
        assert _rows(b)[0][:2] == ["1", "alpha"] and len(_rows(b)) == rowCount
        assert _shown(b) == "beta" and "of 0-5" in b.text("#current-slice")
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
        _openGate(server)
        page.wait_text("#progress-text", "previews of alpha (iteration 10), beta (iteration 20)", timeout=60)
        assert _shown(b) == "alpha" and "of 0-7" in b.text("#current-slice")
        assert "preview at iteration 10 — preliminary" in b.text("#preview-marker")
        assert _running(b)

        # Training ends: the final results replace the previews; the marker goes.
        _openGate(server)
        page.wait_text("#progress-text", "Done", timeout=60)
        b.wait_for("document.querySelector('#preview-marker') === null", timeout=30, what="the marker to go")
        assert "preliminary" not in b.text("#progress-text")
        rows = _rows(b)
        assert len(rows) == rowCount and [r[:2] for r in rows[:2]] == [["0", "alpha"], ["0", "beta"]], rows
        final = page.settled_view(alphaPreview)
        page.shot("final")
        assert _changed(final, alphaPreview) > 0.002
        errors = [line for line in b.console if line.startswith("exception")]
    assert not errors, errors


def test_a_cancelled_study_retrain_shows_the_last_results_again_in_the_page(server, chromium_path):
    """A study's retrain shows its previews, then is cancelled: the review list across both volumes, the shown
    volume's layers and the marker are the last results' again (``Progress.restored``; the page follows)."""
    shots = SCREENSHOTS / "study-preview-cancelled"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    rowCount = sum(shape[0] for shape in SHAPES.values())
    with Browser(chromium_path, width=1280, height=900) as browser:
        page = Page(browser, shots)
        b = browser
        b.navigate(server.url)
        page.wait_text("#volume-name", "alpha", timeout=60)
        before = _startStudy(page)
        for progress in ("previews of alpha (iteration 0), beta (iteration 0)",  # the first round, to its results
                         "previews of alpha (iteration 10), beta (iteration 0)",
                         "previews of alpha (iteration 10), beta (iteration 20)"):
            page.wait_text("#progress-text", progress, timeout=60)
            _openGate(server)
        page.wait_text("#progress-text", "Done", timeout=60)
        b.wait_for("document.querySelector('#preview-marker') === null", timeout=30, what="the marker to go")
        final = page.settled_view(before)
        finalRows = b.evaluate(ROWS)
        assert len(finalRows) == rowCount and _shown(b) == "beta"
        page.shot("final")

        # The retrain's previews: their review list, beta's preview layers and the marker.
        b.click("#retrain-button")
        page.wait_text("#progress-text", "previews of alpha (iteration 0), beta (iteration 0) — preliminary",
                       timeout=60)
        page.wait_text("#preview-marker", "preview at iteration 0 — preliminary")
        _waitRows(b, finalRows, False, "the review list of the retrain's previews")
        preview = page.settled_view(final)
        page.shot("retrain-previews")

        # Cancelled: the last results are shown again, rows and layers; the marker goes.
        b.click("#cancel-button")
        page.wait_text("#progress-text", "cancelled", timeout=60)
        assert "The last results are shown again" in b.text("#progress-text")
        b.wait_for("document.querySelector('#preview-marker') === null", timeout=30, what="the marker to go")
        _waitRows(b, finalRows, True, "the last results' review list")
        restored = page.settled_view(preview)
        page.shot("cancelled")
        assert _shown(b) == "beta"
        assert _changed(restored, final) < 0.002, "the view does not show the last results' layers again"
        errors = [line for line in b.console if line.startswith("exception")]
    assert not errors, errors
