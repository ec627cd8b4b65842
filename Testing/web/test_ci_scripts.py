"""`bash .ci/run` says what it is about to do (a virtual environment, apt-get as root, the tests) before it
does it, and `--dry-run` only says it: nothing is installed or created."""

from __future__ import annotations

import shutil
import subprocess

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
