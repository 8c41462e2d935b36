"""Validation metrics: means over sampled chains of the per-chain geometry of :mod:`flowbb.eval.metrics`.

The geometry itself (one set of key names: :func:`flowbb.geometry.report.trace_report`) is
:func:`flowbb.eval.metrics.backbone_metrics` for proteins and :func:`flowbb.eval.metrics.rna_backbone_metrics` for
RNA; :meth:`flowbb.molecules.base.Molecule.sample_metrics` picks the one of a molecule type. Both names are
re-exported here for the callers that still import them from this module.
"""

from __future__ import annotations

import numbers

from flowbb.eval.metrics import backbone_metrics, rna_backbone_metrics

__all__ = ["backbone_metrics", "mean_metrics", "rna_backbone_metrics"]


def mean_metrics(rows: list[dict[str, float | str]], prefix: str = "") -> dict[str, float]:
    """Means over chains of every numeric key of per-chain geometry rows (``length`` and strings such as
    ``secondary_structure`` excluded), keyed ``prefix + key`` (validation: ``val/``)."""
    if not rows:
        return {}
    keys = [k for k, v in rows[0].items() if k != "length" and isinstance(v, numbers.Real)]
    return {f"{prefix}{k}": sum(float(r[k]) for r in rows) / len(rows) for k in keys}
