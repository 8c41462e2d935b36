"""flowbb.bench: exponent fits, fresh-process points (result, peak memory, errors naming the point), sweeps, report.

The point functions below run in child processes (:mod:`flowbb.bench.child` loads this file by its path).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowbb.bench.harness import Point, PointError, run_point, run_points, target_name
from flowbb.bench.measure import measure, time_calls
from flowbb.bench.report import extrapolate, fit_exponent, fit_exponents, write_report

# ------------------------------------------------------------------------------------------------------------------
# point functions (run in a fresh process)
# ------------------------------------------------------------------------------------------------------------------


def echo(**kwargs: object) -> dict:
    """The arguments back, with the process id."""
    return {"args": kwargs, "pid": os.getpid()}


def allocate(mb: int) -> dict:
    """Hold ``mb`` MiB of written bytes inside a CPU peak-memory block."""
    from flowbb.bench.measure import peak_memory

    with peak_memory("cpu") as peak:
        block = b"\x01" * (mb * 2**20)  # written, so resident
        del block
    return {"peak_mem_mb": peak.mb}


def fail(message: str) -> dict:
    raise ValueError(message)


def exhaust() -> dict:
    raise MemoryError("cannot allocate 1 TB")


def sigkill() -> dict:
    os.kill(os.getpid(), 9)
    return {}


def sleep(seconds: float) -> dict:
    time.sleep(seconds)
    return {}


def timed(L: int, fail_at: int = -1) -> dict:
    """A point of a fake sweep: seconds ~ L^2, memory ~ L."""
    if L == fail_at:
        raise RuntimeError(f"broken at {L}")
    return {"seconds": 1e-6 * L**2, "peak_mem_mb": 0.01 * L}


# ------------------------------------------------------------------------------------------------------------------
# exponent fits
# ------------------------------------------------------------------------------------------------------------------


def test_fit_exponent_recovers_known_exponents() -> None:
    ls = [256, 512, 1024, 2048, 4096, 8192]
    for p in (0.5, 1.0, 1.5, 2.0, 3.0):
        assert fit_exponent(ls, [3.7 * x**p for x in ls]) == pytest.approx(p, abs=1e-9)
    rng = random.Random(0)  # 5 % multiplicative noise: within 0.05 over five octaves
    noisy = [2e-3 * x**1.2 * math.exp(rng.gauss(0, 0.05)) for x in ls]
    assert fit_exponent(ls, noisy) == pytest.approx(1.2, abs=0.05)
    assert fit_exponent([1024], [1.0]) is None
    assert fit_exponent([1024, 1024], [1.0, 2.0]) is None
    assert fit_exponent([1024, 2048, 4096], [None, 0.0, 5.0]) is None  # non-positive / missing points dropped


def test_fit_exponents_per_group_range_and_fallback() -> None:
    rows = [{"impl": "a", "L": x, "status": "ok", "seconds": 1e-3 * x**2, "peak_mem_mb": 0.1 * x}
            for x in (128, 1024, 2048, 4096)]
    rows += [{"impl": "b", "L": x, "status": "ok", "seconds": 1e-3 * x, "peak_mem_mb": 1e-4 * x**2}
             for x in (128, 256)]
    rows += [{"impl": "b", "L": 8192, "status": "skipped", "seconds": None, "peak_mem_mb": None}]
    exps = {e["group"]["impl"]: e for e in fit_exponents(rows, ("impl",), (1024, None))}
    assert exps["a"]["time"] == pytest.approx(2.0) and exps["a"]["memory"] == pytest.approx(1.0)
    assert exps["a"]["lengths"] == [1024, 2048, 4096] and not exps["a"]["fallback"]
    assert exps["b"]["time"] == pytest.approx(1.0) and exps["b"]["memory"] == pytest.approx(2.0)
    assert exps["b"]["fallback"] and exps["b"]["lengths"] == [128, 256]
    assert extrapolate([(512, 100.0), (1024, 400.0)], 2048, 2.0) == pytest.approx(1600.0)
    assert extrapolate([(4096, 1.0)], 2048) is None


# ------------------------------------------------------------------------------------------------------------------
# fresh-process points
# ------------------------------------------------------------------------------------------------------------------


def test_point_runs_in_a_fresh_process_and_returns_its_result() -> None:
    out = run_point(echo, {"x": 3, "names": ["a", "b"]}, timeout=60)
    assert out["args"] == {"x": 3, "names": ["a", "b"]} and out["pid"] != os.getpid()
    assert out["process_peak_rss_mb"] > 1 and out["wall_s"] > 0
    assert target_name(echo).endswith("test_bench_harness.py:echo")
    assert target_name(measure) == "flowbb.bench.measure:measure"
    with pytest.raises(ValueError, match="module-level"):
        target_name(lambda: {"x": 1})


def test_point_peak_memory_grows_with_a_known_allocation() -> None:
    small = run_point(allocate, {"mb": 0}, timeout=60)
    big = run_point(allocate, {"mb": 256}, timeout=60)
    assert small["peak_mem_mb"] < 16
    assert 256 * 0.95 <= big["peak_mem_mb"] <= 256 * 1.1 + 16
    grown = big["process_peak_rss_mb"] - small["process_peak_rss_mb"]
    assert 256 * 0.9 <= grown <= 256 * 1.1 + 16


@pytest.mark.parametrize(("fn", "args", "kind", "text"), [
    (fail, {"message": "bad input"}, "failed", "ValueError: bad input"),
    (exhaust, {}, "oom", "MemoryError"),
    (sigkill, {}, "oom", "SIGKILL"),
    (sleep, {"seconds": 30}, "timeout", "no result after 2 s"),
])
def test_failing_point_raises_an_error_naming_the_point(fn, args, kind, text) -> None:
    with pytest.raises(PointError, match="impl=flash L=4096") as info:
        run_point(fn, args, name="impl=flash L=4096", timeout=2)
    assert info.value.kind == kind and info.value.point == "impl=flash L=4096"
    assert text in str(info.value)
    assert (f"in {fn.__name__}" in info.value.traceback) == (kind != "timeout" and fn is not sigkill)


def test_run_points_skips_records_failures_and_saves_partial_rows() -> None:
    saved: list[int] = []
    points = [Point({"L": x}, timed, {"L": x, "fail_at": 64}) for x in (16, 32, 64, 128)]
    rows = run_points(points, timeout=60, progress=False, after=lambda rs: saved.append(len(rs)),
                      skip=lambda pt, rs: "too long" if pt.labels["L"] > 100 else None)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "skipped"] and saved == [1, 2, 3, 4]
    assert rows[2]["note"] == "failed: RuntimeError: broken at 64" and rows[3]["note"] == "too long"
    assert rows[1]["seconds"] == pytest.approx(1e-6 * 32**2)


# ------------------------------------------------------------------------------------------------------------------
# timing in the child, report
# ------------------------------------------------------------------------------------------------------------------


def test_time_calls_reports_median_and_minimum() -> None:
    delays = iter([0.0, 0.03, 0.01, 0.02])  # the first is the warm-up

    def run() -> None:
        time.sleep(next(delays))

    out = time_calls(run, repeats=3, warmup=1)
    assert len(out["times"]) == 3 and out["seconds_min"] == min(out["times"])
    assert out["seconds"] == sorted(out["times"])[1] and 0.015 < out["seconds"] < 0.03
    m = measure(lambda: None, "cpu", repeats=2, warmup=0, memory="during")
    assert m["peak_mem_mb"] is not None and m["memory_protocol"] == "during"


def test_write_report_writes_json_markdown_and_png(tmp_path: Path) -> None:
    rows = [{"impl": "flash", "L": x, "status": "ok", "note": "", "seconds": 1e-3 * x, "seconds_min": 9e-4 * x,
             "peak_mem_mb": 0.5 * x} for x in (256, 512, 1024)]
    rows.append({"impl": "ipa", "L": 1024, "status": "skipped", "note": "predicted 40 GB", "seconds": None,
                 "peak_mem_mb": None})
    out = tmp_path / "r" / "bench.json"
    doc = write_report(out, benchmark="t", title="Test bench", meta={"device": "cpu"}, rows=rows,
                       columns=[("impl", "impl", ""), ("L", "L", "d"), ("seconds", "seconds", ".3f"),
                                ("note", "note", "")], group_by=("impl",), summary=False)
    assert json.loads(out.read_text()) == json.loads(json.dumps(doc))
    assert doc["exponents"][0]["time"] == pytest.approx(1.0) and len(doc["exponents"]) == 1
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Test bench") and "| flash | 512 | 0.512 | - |" in md and "| ipa | 1024 | - |" in md
    assert "median" in md and "| flash | 1.00 | 1.00 | 256, 512, 1024 |" in md
    assert out.with_suffix(".png").stat().st_size > 1000


def test_harness_imports_no_lightning_and_no_torch() -> None:
    code = ("import json, sys\nimport flowbb.bench.harness, flowbb.bench.report, flowbb.bench.measure\n"
            "print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = [m for m in loaded if m.split(".")[0] in ("lightning", "pytorch_lightning", "torch", "flowbb.training")]
    assert not bad, bad
