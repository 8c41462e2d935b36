"""scripts/bench_train.py: one measured training step, the exponent fit and the report."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_exponent_recovers_power_law(bench) -> None:
    rows = [{"model": "ipa", "length": n, "status": "ok", "peak_mem_gb": 0.01 * n**1.5, "seconds": 2e-3 * n}
            for n in (256, 512, 1024)]
    rows.append({"model": "ipa", "length": 4096, "status": "skipped", "peak_mem_gb": None, "seconds": None,
                 "note": "skipped: predicted 41.0 GB > cap 20 GB"})
    assert bench.fit_exponent(rows, "peak_mem_gb", 256, 4096) == pytest.approx(1.5)
    assert bench.fit_exponent(rows, "seconds", 512, 4096) == pytest.approx(1.0)
    assert bench.fit_exponent(rows[:1], "seconds", 0, 10**6) is None
    md = bench.markdown(rows, {"ipa": {"memory": 1.5, "time": 1.0, "range": [512, 4096]}})
    assert "| ipa | 4096 | - | - | skipped | skipped: predicted" in md and "| ipa | 1024 | 2.05 |" in md
    assert "ipa: memory exponent 1.50, time exponent 1.00" in md


def test_worker_measures_one_training_step(bench) -> None:
    row = bench.worker("flash", 40, "cpu", repeats=1, threads=0)
    assert row["status"] == "ok" and row["length"] == 40 and row["experiment"] == "foldflow_flash"
    assert row["seconds"] > 0 and math.isfinite(row["peak_mem_gb"]) and row["peak_mem_gb"] >= 0
    assert row["params"] > 10**6  # the full-size foldflow_flash model
