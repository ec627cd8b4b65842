"""What the engine and its front ends (CLI, job folder, Slicer module, web page) agree on, written once.

This module imports nothing but the standard library, so the Slicer module and the web server can
import it without torch or MONAI (``from semiseg.contract import DEFAULT_METHOD``).

- :data:`DEFAULT_METHOD`: the method a run uses when none is named (CLI, ``job.json``, the module's
  and the web page's method choice). Change it here and every front end follows.
- :data:`METHOD_LABELS`: the registered method names (``semiseg.methods.METHODS``; a test checks
  that both list the same names) and how a front end shows them, in the order a menu lists them.
- The exit codes of ``semiseg`` (also the ``exit_code`` of ``status.json``).
"""

from __future__ import annotations

__all__ = ["DEFAULT_METHOD", "METHOD_LABELS", "JOB_FORMAT_VERSION",
           "EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_CANCELLED"]

METHOD_LABELS: dict[str, str] = {
    "unimatch": "UniMatch",
    "fixmatch": "FixMatch",
    "crossmatch": "CrossMatch",
    "semsim": "SemSim",
    "refguided": "Reference-guided",
    "supervised": "Supervised only",
}

DEFAULT_METHOD = "unimatch"

JOB_FORMAT_VERSION = 1
"""The ``format_version`` of ``job.json`` this engine writes and reads (docs/JOB_FORMAT.md)."""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3

assert DEFAULT_METHOD in METHOD_LABELS, "the default method must be a registered one"
