"""scripts/bench_ipa.py: exponent fit and target checks (fast), and an end-to-end tiny run (slow)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_ipa.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_ipa", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fit_exponent_and_target_checks():
    b = _load()
    ls = [1024, 2048, 4096, 8192]
    assert math.isclose(b.fit_exponent(ls, [3.0 * l_**1.5 for l_ in ls]), 1.5, rel_tol=1e-9)
    assert b.fit_exponent([1024], [1.0]) is None
    rows = [
        {"impl": "flash", "mode": "fwd_bwd", "L": l_, "seconds": 1.0, "peak_mem_mb": 0.15 * l_} for l_ in ls
    ]
    rows += [
        {"impl": "sdpa", "mode": "fwd_bwd", "L": 4096, "seconds": 0.5, "peak_mem_mb": 10.0},
        {"impl": "ipa", "mode": "fwd_bwd", "L": 1024, "seconds": 9.0, "peak_mem_mb": 5000.0},
    ]
    checks = {name: (res, nums) for name, res, nums in b.target_checks(rows)}
    assert checks["flash fwd+bwd peak extra memory at L=8192 <= 1.5 GB"][0] == "PASS"
    assert checks["flash fwd+bwd memory exponent over 1024..8192 <= 1.15"] == ("PASS", "1.000")
    assert checks["flash fwd+bwd time <= 1.5x sdpa floor at L=4096"][0] == "FAIL"  # 2x
    assert checks["flash >= 20x less peak memory than ipa at L=1024 (fwd_bwd)"][0] == "PASS"
    # quadratic extrapolation for the dense path
    assert b.predicted_ipa_mb(2048, "fwd", {(1024, "fwd"): 100.0}) == 400.0


@pytest.mark.slow
def test_bench_ipa_end_to_end_tiny(tmp_path):
    b = _load()
    out = tmp_path / "bench.json"
    rc = b.main(
        ["--lengths", "32", "64", "--out", str(out), "--repeats", "1", "--modes", "fwd_bwd", "--threads", "1"]
    )
    assert rc == 0
    rows = json.loads(out.read_text())
    assert {(r["impl"], r["L"]) for r in rows} == {
        (i, l_) for i in ("flash", "ipa", "sdpa") for l_ in (32, 64)
    }
    for r in rows:
        assert r["seconds"] > 0 and r["peak_mem_mb"] is not None, r
    assert out.with_suffix(".md").read_text().startswith("# IPA benchmark")
    assert out.with_suffix(".png").stat().st_size > 1000
