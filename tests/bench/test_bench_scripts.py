"""scripts/bench_ipa.py, bench_train.py, bench_sample.py on the shared harness: their sweep logic, and one tiny real
invocation of each (smallest L, one repeat) that writes its JSON, markdown and plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_ipa() -> ModuleType:
    return _load("bench_ipa")


@pytest.fixture(scope="module")
def bench_train() -> ModuleType:
    return _load("bench_train")


@pytest.fixture(scope="module")
def bench_sample() -> ModuleType:
    return _load("bench_sample")


def _report(out: Path, benchmark: str) -> dict:
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == benchmark and "median" in doc["conventions"]["seconds"]
    assert out.with_suffix(".md").read_text().startswith("# ")
    assert out.with_suffix(".png").stat().st_size > 1000
    return doc


def _measured(row: dict) -> None:
    assert row["status"] == "ok", row
    assert row["seconds"] > 0 and row["seconds_min"] <= row["seconds"] and len(row["times"]) == 1
    assert row["peak_mem_mb"] >= 0 and row["process_peak_rss_mb"] > 0


def test_bench_ipa_skips_dense_path_past_the_cap(bench_ipa: ModuleType) -> None:
    rows = [{"impl": "ipa", "mode": "fwd", "L": 1024, "peak_mem_mb": 100.0},
            {"impl": "flash", "mode": "fwd", "L": 2048, "peak_mem_mb": 1.0}]
    assert bench_ipa.predicted_ipa_mb(2048, "fwd", rows) == pytest.approx(400.0)
    assert bench_ipa.predicted_ipa_mb(1024, "fwd_bwd", rows) == pytest.approx(1024**2 * 2400 * 4 / 2**20)
    ratio_rows = [{"impl": i, "mode": "fwd_bwd", "L": 4096, "seconds": s, "peak_mem_mb": m}
                  for i, s, m in (("flash", 3.0, 10.0), ("sdpa", 2.0, 5.0), ("ipa", 9.0, 250.0))]
    assert "| fwd_bwd | 4096 | 1.50x | 25.0x |" in bench_ipa.ratios_markdown(ratio_rows)
    assert "PASS" not in SCRIPTS.joinpath("bench_ipa.py").read_text()  # targets live in docs and tests


def test_bench_train_skip_reason(bench_train: ModuleType) -> None:
    rows = [{"model": "ipa", "L": 256, "status": "ok", "peak_mem_mb": 2048.0}]
    assert bench_train.skip_reason("flash", 4096, rows, 1.0) is None
    assert bench_train.skip_reason("ipa", 512, rows, 20.0) is None  # 8 GB predicted
    assert bench_train.skip_reason("ipa", 1024, rows, 20.0).startswith("predicted 32.0 GB > cap 20 GB")
    assert "L=256 already passed" in bench_train.skip_reason("ipa", 512, rows, 1.0)


def test_bench_ipa_tiny_run_writes_its_report(bench_ipa: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "ipa.json"
    assert bench_ipa.main(["--lengths", "16", "--out", str(out), "--repeats", "1", "--modes", "fwd_bwd",
                           "--threads", "1"]) == 0
    doc = _report(out, "ipa")
    assert [(r["impl"], r["L"], r["mode"]) for r in doc["rows"]] == [(i, 16, "fwd_bwd") for i in ("flash", "ipa", "sdpa")]
    for row in doc["rows"]:
        _measured(row)


def test_bench_train_tiny_run_writes_its_report(bench_train: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    assert bench_train.main(["--lengths", "16", "--models", "flash", "--out", str(out), "--threads", "1"]) == 0
    (row,) = _report(out, "train")["rows"]
    _measured(row)
    assert (row["model"], row["L"], row["experiment"], row["precision"]) == ("flash", 16, "foldflow_flash", "32")
    assert row["params"] > 10**6 and row["memory_protocol"] == "during"  # the full-size model, AdamW state counted


def test_bench_sample_tiny_run_writes_its_report(bench_sample: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "sample.json"
    assert bench_sample.main(["--long-length", "0", "--lengths", "16", "--batch", "1", "--num-steps", "2",
                              "--threads", "1", "--out", str(out)]) == 0
    (row,) = _report(out, "sample")["rows"]
    _measured(row)
    assert (row["L"], row["batch"], row["num_steps"]) == (16, 1, 2) and row["finite"]
    assert row["seconds_per_backbone"] == row["seconds"]
