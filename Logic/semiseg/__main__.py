"""``python -m semiseg``: the command line (see :mod:`semiseg.cli`)."""

import sys

from .cli import main

sys.exit(main())
