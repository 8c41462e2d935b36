"""scripts/sampler_sweep.py on a real (tiny) checkpoint: every setting starts from the same priors, the records
and the table are written."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sampler_sweep.py"


def test_sampler_sweep_same_priors_per_setting(tiny_checkpoint: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("sampler_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "sweep"
    module.main(["--ckpt", str(tiny_checkpoint), "--out", str(out), "--samples", "3", "--length", "30",
                 "--no-mpnn", "--processed-dir", str(tiny_checkpoint.parents[2] / "processed"),
                 "--setting", "{}", "--setting", '{"langevin_rate": 0.0}',
                 "--setting", '{"langevin_rate": 2.0, "temperature": 0.0}'])
    records = json.loads(out.with_suffix(".json").read_text())
    assert [r["settings"] for r in records] == [{}, {"langevin_rate": 0.0}, {"langevin_rate": 2.0, "temperature": 0.0}]
    plain, off, cold = records
    assert len(plain["rows"]) == 3 and math.isnan(plain["mpnn_nll"])
    assert plain["rows"] == off["rows"]  # same priors, same (deterministic) sampler
    assert cold["rows"] != plain["rows"]
    assert 0.0 < cold["pairwise_tm"] <= 1.0
    table = out.with_suffix(".md").read_text()
    assert table.count("\n") == 5 and '"langevin_rate": 2.0' in table
