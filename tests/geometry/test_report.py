"""The batched trace report (flowbb.geometry.report): closed forms on constructed traces, padding, key names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowbb.geometry.checks import folded_rg
from flowbb.geometry.report import PROTEIN_TRACE, RNA_TRACE, report_rows, trace_report


def _line(n: int, spacing: float) -> torch.Tensor:
    trace = torch.zeros(n, 3, dtype=torch.float64)
    trace[:, 0] = spacing * torch.arange(n, dtype=torch.float64)
    return trace


def test_straight_chain_closed_forms() -> None:
    n = 20
    rep = trace_report(_line(n, 3.8)[None], torch.ones(1, n))
    assert list(rep) == list(PROTEIN_TRACE.report_keys())
    assert rep["length"].item() == n and rep["ca_ca_mean"].item() == pytest.approx(3.8)
    assert rep["ca_ca_deviation"].item() == pytest.approx(0.0, abs=1e-12)
    assert rep["clashes"].item() == 0 and rep["clashes_per_100"].item() == 0
    rg = 3.8 * math.sqrt((n * n - 1) / 12.0)  # points evenly spaced on a line
    assert rep["rg"].item() == pytest.approx(rg)
    assert rep["rg_ratio"].item() == pytest.approx(rg / folded_rg(n))


def test_clashes_and_rna_keys() -> None:
    # a hairpin of 6 residues: residue 5 folded back onto residue 1 (|i - j| = 4)
    trace = _line(6, 3.8)
    trace[5] = trace[1] + torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
    rep = trace_report(trace[None], torch.ones(1, 6))
    assert rep["clashes"].item() == 1 and rep["clashes_per_100"].item() == pytest.approx(100 / 6)
    rna = trace_report(_line(8, 6.0)[None], torch.ones(1, 8), RNA_TRACE)
    assert list(rna) == list(RNA_TRACE.report_keys()) and "c4_c4_in_range" in rna
    assert rna["c4_c4_mean"].item() == pytest.approx(6.0) and rna["c4_c4_in_range"].item() == 1.0
    assert rna["c4_c4_deviation"].item() == pytest.approx(0.13)
    assert rna["rg_ratio"].item() == pytest.approx(rna["rg"].item() / (5.94 * 8 ** (1 / 3)))
    assert "ca_ca_in_range" not in PROTEIN_TRACE.report_keys()


def test_padding_never_changes_a_chain_and_undefined_is_nan() -> None:
    rng = np.random.default_rng(0)
    a = torch.as_tensor(np.cumsum(rng.normal(scale=2.2, size=(30, 3)), 0))
    b = torch.as_tensor(np.cumsum(rng.normal(scale=2.2, size=(17, 3)), 0))
    trace = torch.full((3, 30, 3), 1e3, dtype=torch.float64)  # padding far away would break Rg/clashes if used
    trace[0], trace[1, :17], trace[2, :1] = a, b, a[:1]
    mask = torch.zeros(3, 30, dtype=torch.bool)
    mask[0], mask[1, :17], mask[2, :1] = True, True, True
    rows = report_rows(trace_report(trace, mask))
    assert rows[0] == pytest.approx(report_rows(trace_report(a[None], torch.ones(1, 30)))[0])
    assert rows[1] == pytest.approx(report_rows(trace_report(b[None], torch.ones(1, 17)))[0])
    assert rows[2]["length"] == 1 and rows[2]["rg"] == 0.0 and math.isnan(rows[2]["ca_ca_mean"])
    assert math.isnan(rows[2]["ca_ca_deviation"])
    # numpy input and float32 give the same report (computed in float64)
    again = trace_report(trace.float().numpy(), mask.numpy())
    assert again["rg"][:2].tolist() == pytest.approx(trace_report(trace, mask)["rg"][:2].tolist(), rel=1e-6)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"trace \[\.\.\., L, 3\]"):
        trace_report(torch.zeros(2, 5, 4), torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"\[B\] values"):
        report_rows(trace_report(torch.zeros(2, 3, 5, 3), torch.ones(2, 3, 5)))


def test_folded_rg_float_and_tensor_agree() -> None:
    lengths = torch.tensor([0.0, 1.0, 57.0, 300.0], dtype=torch.float64)
    expected = [folded_rg(float(n)) for n in lengths]
    assert folded_rg(lengths).tolist() == pytest.approx(expected)
    assert folded_rg(100) == pytest.approx(2.2 * 100**0.38)
    assert folded_rg(64, 5.94, 1 / 3) == pytest.approx(5.94 * 4)
