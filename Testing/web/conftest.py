"""Fixtures of the web tests (helpers in :mod:`webtesting`, the browser driver in :mod:`cdp`)."""

from __future__ import annotations

import hashlib
import os

import pytest

import webtesting  # noqa: F401
from cdp import find_chromium

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # offscreen views without X


@pytest.fixture(scope="session")
def chromium_path():
    path = find_chromium()
    if path is None:
        pytest.fail("Chromium is missing: run .ci/install-web.sh (apt-get install chromium)")
    return path


def _digests(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def tracked_resources_stay_unchanged():
    """The tests write screenshots to Testing/web/screenshots/ only: Resources/ (the README's images) is the
    same after the run (``python Testing/web/readme_screenshot.py`` regenerates the README's image)."""
    resources = webtesting.ROOT / "Resources"
    before = _digests(resources)
    yield
    after = _digests(resources)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        pytest.fail(f"the web tests rewrote tracked files in Resources/: {changed}")
