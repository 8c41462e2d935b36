"""notebooks/quickstart.ipynb runs top to bottom (nbclient) against the checkpoint the test suite trains."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out_dir = tmp_path / "samples"
    monkeypatch.setenv("FLOWBB_CKPT", str(tiny_checkpoint))
    monkeypatch.setenv("FLOWBB_NOTEBOOK_OUT", str(out_dir))
    monkeypatch.setenv("FLOWBB_NOTEBOOK_LENGTHS", "14,18")
    monkeypatch.setenv("FLOWBB_NOTEBOOK_SAMPLES", "1")
    monkeypatch.setenv("FLOWBB_NOTEBOOK_STEPS", "5")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend puts the figure in the outputs
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny model: one thread is far faster on a busy shared CPU
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    for n in (14, 18):
        assert (out_dir / f"length_{n}" / "sample_0.pdb").is_file()
    assert (out_dir / "samples.csv").is_file()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure in the notebook outputs"
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "ema weights" in text and "max |file - sample|" in text
    tables = [o["data"].get("text/html", "") for o in outputs if "data" in o]
    assert any("ca_ca_deviation" in t and "helix_frac" in t and "rg" in t for t in tables)
