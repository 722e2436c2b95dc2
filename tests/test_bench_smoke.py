"""Every benchmark in bench/ runs in its smoke mode (tiny input, offline, CPU), so none can rot unnoticed.

A bench's figures are not checked here (they are timing- and machine-dependent); what is checked is that the
script still runs end to end on the current code and prints something.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))


def test_every_bench_is_found():
    assert SCRIPTS, f"no bench scripts under {BENCH}"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[script.stem for script in SCRIPTS])
def test_bench_smoke(script: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"], cwd=BENCH.parent, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{script.name} --smoke exited {result.returncode}:\n{output[-4000:]}"
    assert result.stdout.strip(), f"{script.name} --smoke printed no figures:\n{output[-2000:]}"
