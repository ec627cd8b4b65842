"""Regenerate the README's browser screenshot, ``Resources/Screenshots/web_review.png``::

    python Testing/web/readme_screenshot.py

It runs the browser test (``test_e2e_browser.py``: an ACDC volume, the left ventricle painted on two
slices, 150 FixMatch iterations at 64 px on the CPU), which leaves its screenshots in
``Testing/web/screenshots/``, and copies the one taken when training has ended (the pseudo-labels over
the confidence overlay, the loss curve, the review list) into ``Resources/``. The tests themselves
never write there (``Testing/web/conftest.py`` checks it), so ``bash .ci/run`` leaves a checkout clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from webtesting import HERE, RESULTS_SCREENSHOT, ROOT, SCREENSHOTS

README_SCREENSHOT = ROOT / "Resources" / "Screenshots" / "web_review.png"


def main() -> int:
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", str(HERE / "test_e2e_browser.py")], cwd=ROOT)
    if code:
        print(f"readme_screenshot: the browser test failed (exit code {code}); {README_SCREENSHOT} is unchanged",
              file=sys.stderr)
        return code
    shutil.copyfile(SCREENSHOTS / RESULTS_SCREENSHOT, README_SCREENSHOT)
    print(f"readme_screenshot: {SCREENSHOTS / RESULTS_SCREENSHOT} -> {README_SCREENSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
