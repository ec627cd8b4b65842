"""The engine waits passively for its OpenMP threads (semiseg.cpu), so that it does not spin on cores that
Slicer or the web page's renderer need; the user's own OMP_WAIT_POLICY always wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from semiseg.cpu import prefer_passive_wait


def test_passive_wait_is_set_only_when_the_user_chose_no_policy():
    env: dict[str, str] = {}
    assert prefer_passive_wait(env) is True and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prefer_passive_wait(env) is False and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"OMP_WAIT_POLICY": ""}  # set but empty counts as unset, as libgomp reads it
    assert prefer_passive_wait(env) is True and env["OMP_WAIT_POLICY"] == "PASSIVE"


def _libgomp_spin_count(user_policy: str | None) -> int:
    """How many times libgomp's threads spin before they sleep, as it reports when the engine's command line
    loads torch (``OMP_DISPLAY_ENV=VERBOSE``). Its ``OMP_WAIT_POLICY`` line cannot tell unset from PASSIVE;
    the spin count can: 300000 unset, 0 passive, 3e10 active."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if user_policy:
        env["OMP_WAIT_POLICY"] = user_policy
    # `train --help` builds the parser, which imports the methods and so torch, then exits 0
    proc = subprocess.run([sys.executable, "-m", "semiseg", "train", "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip().startswith("GOMP_SPINCOUNT")]
    if not lines:
        pytest.fail(f"torch's OpenMP runtime printed no GOMP_SPINCOUNT (not libgomp?): {proc.stderr[-2000:]}")
    return int(lines[0].split("=", 1)[1].strip().strip("'"))


def test_the_engine_command_loads_torch_with_passive_waiting():
    assert _libgomp_spin_count(None) == 0


def test_the_users_wait_policy_reaches_torch_unchanged():
    assert _libgomp_spin_count("ACTIVE") > 10**9
