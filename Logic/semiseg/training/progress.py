"""Progress as JSON lines (stdout and ``progress.jsonl``) and a bar on an interactive terminal."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from ..contract import EVENTS

__all__ = ["ProgressLog"]


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class ProgressLog:
    """Writes one JSON object per event.

    Args:
        path: the ``progress.jsonl`` file (appended to, so a resumed run keeps its history), or ``None``.
        stream: where lines are printed (stdout by default; ``None`` for silence).
        bar: show a tqdm bar on stderr; ``None`` = only when stderr is a terminal.
    """

    def __init__(
        self, path: str | os.PathLike | None, stream: TextIO | None = sys.stdout, bar: bool | None = None
    ) -> None:
        self.path = None if path is None else Path(path)
        self.stream = stream
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self.use_bar = sys.stderr.isatty() if bar is None else bar
        self._bar = None

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event; ``event`` is one of :data:`semiseg.contract.EVENTS` (ValueError otherwise)."""
        if event not in EVENTS:
            raise ValueError(f"unknown progress event {event!r}; add it to semiseg.contract.EVENTS")
        record = _clean({"event": event, **fields})
        line = json.dumps(record)
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        if self.stream is not None and not self.use_bar:
            self.stream.write(line + "\n")
            self.stream.flush()
        if self.use_bar:
            self._update_bar(record)
        return record

    def _say(self, message: str) -> None:
        """A line for the person at the terminal, printed above the bar (the JSON lines are not shown there)."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def _update_bar(self, record: dict[str, Any]) -> None:
        if record.get("warning"):
            self._say(f"semiseg: warning: {record['warning']}")
        if record["event"] == "iteration":
            if self._bar is None:
                from tqdm import tqdm

                # Counted from the first reported iteration: from 0, its first frame would show the steps
                # done before the bar existed as made in microseconds (thousands of it/s).
                self._bar = tqdm(total=record["iterations"], initial=record["iteration"], file=sys.stderr, unit="it")
            else:
                self._bar.update(record["iteration"] - self._bar.n)
            self._bar.set_postfix(loss=record.get("loss"))
        elif record["event"] in ("done", "error", "cancelled") and self._bar is not None:
            self._bar.close()
            self._bar = None
        if record["event"] == "done":
            seconds = record.get("seconds")
            took = f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
            where = f"; results in {self.path.parent}" if self.path is not None else ""
            self._say(f"semiseg: done, {record.get('iteration')} iterations{took}{where}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()
            self._file = None
