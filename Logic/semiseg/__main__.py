"""``python -m semiseg``: the command line (see :mod:`semiseg.cli`).

Under torchrun (``WORLD_SIZE`` > 1, :func:`semiseg.training.distributed.world_from_env`) the process ends
with ``os._exit`` once its output is flushed, skipping the interpreter's and the C++ runtime's teardown:
there gloo's threads may still be joinable when their objects are destroyed, and the C++ runtime then
aborts the finished process ("terminate called without an active exception", exit -6), so torchrun
would report a run that ended well (or was cancelled) as a crash. Every file of the run is closed by then.
"""

import os
import sys

from .cli import main

code = main()
if "WORLD_SIZE" in os.environ:
    from .training.distributed import world_from_env

    if world_from_env().distributed:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
sys.exit(code)
