"""What the command line shows a person: on a terminal the progress bar, with the engine's warnings and the
final line beside it, and a sane first frame; ``evaluate`` reports the spacing in IJK order."""

from __future__ import annotations

import io
import json
import re

import numpy as np

from semiseg import cli
from semiseg.training.progress import ProgressLog

from enginetesting import write_volume


def test_on_a_terminal_the_warning_and_the_results_line_show_beside_the_bar(tmp_path, monkeypatch):
    terminal, stdout = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", terminal)
    log = ProgressLog(tmp_path / "run" / "progress.jsonl", stream=stdout, bar=True)
    log.emit("setup", device="cpu", warning="No GPU found: training runs on the CPU")
    log.emit("iteration", iteration=10, iterations=300, loss=0.5)
    first_frame = terminal.getvalue().rsplit("No GPU found", 1)[1]
    for iteration in (20, 30):
        log.emit("iteration", iteration=iteration, iterations=300, loss=0.4)
    log.emit("done", iteration=300, seconds=61.7)
    log.close()
    shown = terminal.getvalue()
    assert stdout.getvalue() == ""  # the JSON lines go to progress.jsonl, not over the bar
    assert "semiseg: warning: No GPU found: training runs on the CPU" in shown
    assert f"semiseg: done, 300 iterations in 62 s; results in {tmp_path / 'run'}" in shown
    rates = [float(r) for r in re.findall(r"([\d.]+)it/s", first_frame)]
    assert "10/300" in first_frame and all(rate < 1000 for rate in rates), first_frame
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "progress.jsonl").read_text().splitlines()]
    assert events == ["setup", "iteration", "iteration", "iteration", "done"]


def test_evaluate_prints_the_spacing_in_ijk_order(tmp_path, capsys):
    labels = np.zeros((4, 10, 12), np.uint8)  # (K, J, I)
    labels[1:3, 2:8, 3:9] = 1
    spacing = (0.5, 0.7, 3.0)  # (I, J, K)
    pred = write_volume(tmp_path / "pred.nrrd", labels, spacing=spacing)
    ref = write_volume(tmp_path / "ref.nrrd", labels, spacing=spacing)
    assert cli.main(["evaluate", "--pred", str(pred), "--ref", str(ref)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spacing"] == list(spacing)
    assert result["mean"]["dice"] == 1.0
