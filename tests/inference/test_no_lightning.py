"""``flowbb.inference`` loads no Lightning: sampling, the notebook and the benchmarks start without its import cost,
and the package stays below training in the layering (geometry <- model/flow/data <- inference <- training)."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ("flowbb.inference", "flowbb.inference.checkpoint", "flowbb.inference.device",
           "flowbb.inference.generate", "flowbb.inference.cost")


def test_import_loads_no_lightning() -> None:
    """A fresh interpreter imports every inference module; neither ``lightning`` nor ``pytorch_lightning`` (nor any
    of their submodules, nor flowbb.training) is in ``sys.modules`` afterwards."""
    code = ("import importlib, json, sys\n"
            f"for name in {MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(MODULES) <= set(loaded)
    bad = [m for m in loaded if m.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric")
           or m.startswith("flowbb.training")]
    assert not bad, bad
