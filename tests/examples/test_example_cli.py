"""The example scripts refuse bad arguments with a clear message, before loading data or Keras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEUKAEMIA = REPO / "examples" / "leukaemia" / "run.py"
COVID = REPO / "examples" / "covid" / "run.py"


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        (LEUKAEMIA, ["--scenario", "3C"], "invalid choice: '3C'"),
        (LEUKAEMIA, ["--permutations", "0"], "--permutations: 0: pass 1 to 100 permutations"),
        (LEUKAEMIA, ["--permutations", "101"], "pass 1 to 100"),
        (LEUKAEMIA, ["--permutations", "many"], "'many' is not a whole number"),
        (LEUKAEMIA, ["--epochs", "0"], "--epochs: 0: pass an integer >= 1"),
        (LEUKAEMIA, ["--data", "golub2"], "invalid choice: 'golub2'"),
        (LEUKAEMIA, ["--ledger", "fabric", "--fabric-profile", "/nonexistent/profile.json"], "no connection profile"),
        (COVID, ["--permutations", "0"], "pass 1 to 100"),
        (COVID, ["--data", "influenza", "--scenario", "4B"], "needs scenario 2D"),
        (COVID, ["--learning-rate", "-0.1"], "pass a finite number > 0"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(script: Path, args: list[str], message: str) -> None:
    done = run(script, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_help_names_the_data_and_says_what_is_simulated() -> None:
    done = run(LEUKAEMIA, "--help")
    assert done.returncode == 0
    assert "simulated-a2" in done.stdout and "SIMULATED" in done.stdout and "bcr-abl" in done.stdout
    done = run(COVID, "--help")
    assert "influenza" in done.stdout and "SIMULATED" in done.stdout
