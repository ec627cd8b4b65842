"""The test run and its scripts: `bash .ci/run` says what it is about to do (a virtual environment, apt-get as
root, the tests) before it does it, and `--dry-run` only says it; the run hides only expected warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys

from webtesting import ROOT


def test_ci_run_prints_its_plan_and_a_dry_run_changes_nothing(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / ".ci", checkout / ".ci")
    result = subprocess.run(["bash", str(checkout / ".ci" / "run"), "--dry-run"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    for said in ("virtual environment", "torch==2.13.0", "apt-get", "AS ROOT", "sudo", "Chromium", "Mesa",
                 "upgraded", "python -m pytest -q Testing"):
        assert said in plan, f"the plan does not say {said!r}:\n{plan}"
    assert "install-web.sh: Debian packages needed: chromium chromium-driver libegl1" in plan
    assert "trame-slicer[standalone]==2.0.0" in plan
    assert sorted(p.name for p in checkout.iterdir()) == [".ci"], "a dry run made files"


def test_the_readme_says_what_ci_run_installs_as_root():
    readme = (ROOT / "README.md").read_text()
    setup = readme[readme.index("bash .ci/run"):][:1500]
    assert "apt-get" in setup and "root" in setup and "Chromium" in setup and "--dry-run" in setup


def test_the_test_run_hides_the_swig_warnings_of_itk_and_shows_others(tmp_path):
    """ITK's SWIG wrappers warn ~990 times on import (expected, not ours); any other warning still shows."""
    (tmp_path / "test_warnings.py").write_text(
        "import warnings\n\n\n"
        "def test_import_like_itk():\n"
        "    for kind in ('SwigPyPacked', 'SwigPyObject', 'swigvarlink'):\n"
        "        warnings.warn(f'builtin type {kind} has no __module__ attribute', DeprecationWarning)\n"
        "    warnings.warn('a warning of ours', DeprecationWarning)\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_warnings.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "has no __module__ attribute" not in result.stdout
    assert "a warning of ours" in result.stdout


def test_the_screenshot_captions_match_the_run_that_makes_the_screenshot():
    """README and docs/WEB.md describe the run of the browser test that readme_screenshot.py copies from."""
    import re

    test = (ROOT / "Testing" / "web" / "test_e2e_browser.py").read_text()
    iterations = re.search(r'browser\.fill\("#iterations", "(\d+)"\)', test).group(1)
    method = re.search(r'page\.choose\("#method", "(\w+)"\)', test).group(1)
    for doc in ("README.md", "docs/WEB.md"):
        text = " ".join((ROOT / doc).read_text().split())
        assert f"{iterations} {method} iterations" in text, doc
        assert "4-iteration" not in text and "uniformly dark" not in text, doc
    assert "under a minute" not in (ROOT / "README.md").read_text()


def test_the_paint_tests_print_no_vtk_error():
    """Their SlicerApp is torn down quietly: trame-slicer's teardown order made VTK print ``No LookupTable was
    set`` and ``Component 3 is not in input`` after the tests had passed."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(ROOT / "Testing" / "web" / "test_paint_pipelines.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    shown = result.stdout + result.stderr
    assert "ERR|" not in shown and "No LookupTable" not in shown and "is not in input" not in shown, shown[-3000:]
