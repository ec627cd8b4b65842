"""``semiseg serve`` whose training jobs run the fake engine of ``Testing/mrml/fakeengine.py``.

``python fakeserve.py FAKE_DIR serve ARGS...`` installs the fake ``semiseg`` package in ``FAKE_DIR`` and
runs the real command line (``semiseg.cli.main(["serve", ARGS...])``) with one change: the sessions it makes
(one-volume and study sessions) put ``FAKE_DIR`` first on the engine's ``PYTHONPATH``, so ``python -m semiseg
train`` (and ``predict``) runs the fake,
which does what the environment variable ``FAKE_ENGINE`` says (a JSON object, see fakeengine.py). The
server itself, the page and SemiSegSlicerLib are the real ones. For the browser tests of behaviour that
the real engine only shows at its own pace (live previews).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "mrml"))

import fakeengine  # noqa: E402


def main(fakeDir: str, argv: list[str]) -> int:
    fake = str(fakeengine.install(Path(fakeDir)))
    import semiseg_web.logic as logic
    from semiseg.cli import main as cli

    class FakeEngineSession(logic.Session):
        def __init__(self, scene, python, cacheDir, env=None, pythonPath=()):
            super().__init__(scene, python, cacheDir, env=env, pythonPath=[fake])

    class FakeEngineStudySession(logic.StudySession):
        def __init__(self, scene, python, cacheDir, env=None, pythonPath=()):
            super().__init__(scene, python, cacheDir, env=env, pythonPath=[fake])

    logic.Session = FakeEngineSession
    logic.StudySession = FakeEngineStudySession
    return cli(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
