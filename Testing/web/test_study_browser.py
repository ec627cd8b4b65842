"""A study of several volumes in a real browser (headless Chromium over the DevTools protocol), issue 12, item 3:
two of three loaded volumes marked as part of the study, each labelled on its own, trained as one job; one review
list across both, the largest expected gain first, each entry naming its volume; clicking an entry of the second
volume shows that volume and slice; a slice accepted in each volume; Retrain sends both; a fourth volume added from
the page; Apply to more volumes segments the third and fourth without training and their slices join the list.

The server is the real ``semiseg serve`` whose jobs run the fake engine (``fakeserve.py`` with
``Testing/mrml/fakeengine.py``: real result files in the engine's layout, a review list with slice ``k`` at
confidence ``0.5 + 0.01 k`` and gain ``0.05 / (k + 1)`` in every volume of a study).
"""

from __future__ import annotations

import json
import time

import pytest
from test_e2e_browser import Page, _changed

from cdp import Browser
from webtesting import (
    console_exceptions,
    fake_engine_server,
    fresh_screenshots,
    mark_two_volume_study,
    review_rows,
    shown_volume,
    synthetic_volume,
)

SHAPES = {"alpha": (8, 48, 40), "beta": (6, 40, 40), "gamma": (5, 32, 36)}


@pytest.fixture
def server(tmp_path):
    volumes = [synthetic_volume(tmp_path / f"{name}.nrrd", shape=shape) for name, shape in SHAPES.items()]
    with fake_engine_server(tmp_path, volumes, {"mode": "done"}) as process:
        yield process


def _jobs(server) -> list:
    return sorted((server.tmp / "cache").glob("job-*"), key=lambda p: p.stat().st_mtime)


def _wait_jobs(server, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_jobs(server)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no job {count} in the cache")
        time.sleep(0.1)


def test_a_two_volume_study_in_the_browser(server, chromium_path):
    shots = fresh_screenshots("study")
    with Browser(chromium_path, width=1280, height=900) as browser:
        page = Page(browser, shots)
        b = browser
        b.navigate(server.url)
        page.wait_text("#volume-name", "alpha", timeout=60)
        b.wait_for("document.querySelectorAll('#volumes tbody tr, #volumes tr').length >= 3", timeout=30,
                   what="the volume list")
        assert shown_volume(b) == "alpha"

        # two volumes marked as part of the study, each with its own labels (a slice checked, empty, in each)
        mark_two_volume_study(page)
        assert shown_volume(b) == "beta"
        assert "0 labelled" in b.text("#volume-info-2")
        b.fill("#size", "32")
        b.click("#train-study-button")
        _wait_jobs(server, 1)
        page.wait_text("#message", "Pseudo-labels and confidence", timeout=120)
        assert b.text("#progress-text").startswith("Done")

        # one review list across both volumes, the largest expected gain first, each entry naming its volume
        b.wait_for("document.querySelectorAll('#review-table tbody tr').length === 14", timeout=30,
                   what="the study's review list")
        rows = review_rows(b)
        assert [r[:2] for r in rows[:4]] == [["0", "alpha"], ["0", "beta"], ["1", "alpha"], ["1", "beta"]], rows
        gains = [float(r[2]) for r in rows]  # in Dice points (the fake engine: slice k at 5 / (k + 1))
        assert gains == sorted(gains, reverse=True) and gains[0] == 5.0 and {r[1] for r in rows} == {"alpha", "beta"}
        page.shot("study-review")

        # an entry of the second volume shows that volume and that slice
        b.click("#volume-0")
        page.wait_text("#current-slice", "of 0-7")
        alphaView = page.settled_view()
        b.click("#review-table tbody tr", 3)
        page.wait_text("#current-slice", "Slice 1 of 0-5")
        assert shown_volume(b) == "beta" and "of beta" in b.text("#message")
        betaView = page.settled_view(alphaView)
        assert _changed(betaView, alphaView) > 0.02
        page.shot("beta-slice-1")

        # accept it, then a slice of the first volume
        b.click("#accept-button")
        page.wait_text("#volume-info-1", "2 labelled")
        page.wait_text("#message", "Slice 1 of beta copied")
        b.click("#review-table tbody tr", 0)
        page.wait_text("#current-slice", "Slice 0 of 0-7")
        assert shown_volume(b) == "alpha"
        b.click("#accept-button")
        page.wait_text("#volume-info-0", "2 labelled")
        page.wait_text("#message", "Slice 0 of alpha copied")

        # Retrain sends both volumes with their accepted slices, and the Keep largest island chosen on the page
        assert json.loads((_jobs(server)[0] / "job.json").read_text())["keep_largest_island"] == "auto"
        page.choose("#islands", "none")
        b.click("#retrain-button")
        _wait_jobs(server, 2)
        page.wait_text("#message", "Pseudo-labels and confidence", timeout=120)
        job = json.loads((_jobs(server)[-1] / "job.json").read_text())
        assert job["keep_largest_island"] is False
        alpha, beta = job["volumes"]
        assert alpha["image"] == "v01_alpha.nrrd" and beta["image"] == "v02_beta.nrrd"
        assert 0 in alpha["labeled_slices"] and len(alpha["labeled_slices"]) == 2, alpha
        assert 1 in beta["labeled_slices"] and len(beta["labeled_slices"]) == 2, beta
        assert job["init_checkpoint"].endswith("checkpoint.pt")

        # a volume loaded later, from the page (added: the volumes, labels and results stay)
        delta = synthetic_volume(server.tmp / "delta.nrrd", shape=(4, 30, 30))
        b.set_files("#add-volume input[type=file]", [delta])
        page.wait_text("#volume-3", "delta", timeout=60)
        assert shown_volume(b) == "alpha" and len(review_rows(b)) == 14

        # Apply to more volumes: the volumes outside the study (the third, and the one loaded later) segmented with
        # the model, without training; their slices join the review list
        b.wait_for("!document.querySelector('#apply-button').disabled", timeout=30, what="Apply to more volumes")
        b.click("#apply-button")
        b.wait_for("document.querySelectorAll('#review-table tbody tr').length === 23", timeout=120,
                   what="the slices of the volumes segmented with the model in the review list")
        page.wait_text("#volume-info-2", "segmented by the model")
        page.wait_text("#volume-info-3", "segmented by the model")
        assert len(_jobs(server)) == 3  # one more job: the prediction
        rows = review_rows(b)
        assert {r[1] for r in rows} == {"alpha", "beta", "gamma", "delta"}
        assert [float(r[2]) for r in rows] == sorted((float(r[2]) for r in rows), reverse=True)
        b.click("#review-table tbody tr", [r[1] for r in rows].index("gamma"))
        page.wait_text("#current-slice", "of 0-4")
        assert shown_volume(b) == "gamma"
        b.click("#review-table tbody tr", [r[1] for r in rows].index("delta"))
        page.wait_text("#current-slice", "of 0-3")
        assert shown_volume(b) == "delta"
        page.shot("delta")
        errors = console_exceptions(b)
    assert not errors, errors
