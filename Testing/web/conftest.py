"""Fixtures of the web tests (helpers in :mod:`webtesting`, the browser driver in :mod:`cdp`)."""

from __future__ import annotations

import os

import pytest
import webtesting  # noqa: F401 - puts Web/ and SemiSegSlicer/ on sys.path
from cdp import find_chromium

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # offscreen views without X


@pytest.fixture(scope="session")
def chromium_path():
    path = find_chromium()
    if path is None:
        pytest.fail("Chromium is missing: run .ci/install-web.sh (apt-get install chromium)")
    return path
