"""The one batched geometry report of backbone traces (one atom per residue: CA for proteins, C4' for RNA).

:func:`trace_report` gives, per chain, under one set of key names (a :class:`TraceSpec` names the bond and holds the
molecule type's constants):

=====================  ============================================================================================
key                    value
=====================  ============================================================================================
``length``             residues with a trace atom (the mask's count)
``<bond>_mean``        mean distance (Å) of consecutive trace atoms; ``<bond>`` is ``ca_ca`` (proteins), ``c4_c4`` (RNA)
``<bond>_deviation``   mean ``|d - ideal|`` (Å) over the same pairs (ideal: 3.8 Å CA-CA, 6.13 Å C4'-C4')
``<bond>_in_range``    fraction of those distances in the spec's ``bond_range`` (RNA: 5.5-6.5 Å; only with a range)
``clashes``            trace-atom pairs ``i < j``, ``j - i >= clash_min_seq_sep``, closer than ``clash_distance``
``clashes_per_100``    ``100 * clashes / length``
``rg``                 radius of gyration of the trace atoms (Å)
``rg_ratio``           ``rg`` over the compact-chain scaling ``rg_prefactor * length^rg_exponent``
                       (:func:`flowbb.geometry.checks.folded_rg`)
=====================  ============================================================================================

Consecutive means position along the L axis (a generated chain is bonded throughout). Values that are undefined for
a chain (no residue, no consecutive pair) are NaN. The per-molecule reports of :mod:`flowbb.eval.metrics` add DSSP
(proteins) and bond/angle geometry (RNA) to these keys; validation logs them as ``val/<key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from flowbb.geometry import rna
from flowbb.geometry.checks import (
    FOLDED_RG_EXPONENT,
    FOLDED_RG_PREFACTOR,
    IDEAL_CA_CA,
    ca_ca_deviation,
    ca_ca_distances,
    count_clashes,
    folded_rg,
    radius_of_gyration,
)

Tensor = torch.Tensor


@dataclass(frozen=True)
class TraceSpec:
    """The constants of one molecule type's trace report (see the module docstring).

    Attributes:
        bond: key prefix of the consecutive-distance keys (``ca_ca``, ``c4_c4``).
        ideal_bond: reference consecutive distance (Å).
        clash_distance: pairs closer than this (Å) clash.
        clash_min_seq_sep: only pairs at least this far apart along the chain can clash.
        rg_prefactor, rg_exponent: compact-chain radius of gyration ``rg_prefactor * L^rg_exponent`` (Å).
        bond_range: (low, high) Å for ``<bond>_in_range``, or None (no such key).
    """

    bond: str
    ideal_bond: float
    clash_distance: float
    clash_min_seq_sep: int
    rg_prefactor: float
    rg_exponent: float
    bond_range: tuple[float, float] | None = None

    def report_keys(self) -> tuple[str, ...]:
        """The report's keys, in order."""
        in_range = (f"{self.bond}_in_range",) if self.bond_range is not None else ()
        return ("length", f"{self.bond}_mean", f"{self.bond}_deviation", *in_range, "clashes", "clashes_per_100",
                "rg", "rg_ratio")


#: proteins: CA trace; a clash is a CA pair at |i - j| >= 3 closer than 3.0 Å (the sample metric; the training loss
#: uses :attr:`flowbb.molecules.protein.Protein.clash_distance`, 3.8 Å)
PROTEIN_TRACE = TraceSpec(
    bond="ca_ca", ideal_bond=IDEAL_CA_CA, clash_distance=3.0, clash_min_seq_sep=3,
    rg_prefactor=FOLDED_RG_PREFACTOR, rg_exponent=FOLDED_RG_EXPONENT,
)
#: RNA: C4' trace. Consecutive C4'-C4' of real RNA: median 6.13 Å over the 199 chains of ../shared/data/rna (5 % and
#: 95 % quantiles 5.23 and 6.79 Å; 79 % of the distances lie in 5.5-6.5 Å). Rg: the compact-RNA scaling of Hyeon, Dima
#: & Thirumalai (Structure 2006; 5.5 L^(1/3) there) with the prefactor refitted as the median of Rg / L^(1/3) over
#: the same chains (40-150 nt). Clashes: :data:`flowbb.geometry.rna.C4_CLASH_DISTANCE` at |i - j| >= 2.
RNA_TRACE = TraceSpec(
    bond="c4_c4", ideal_bond=6.13, clash_distance=rna.C4_CLASH_DISTANCE, clash_min_seq_sep=rna.C4_CLASH_MIN_SEQ_SEP,
    rg_prefactor=5.94, rg_exponent=1.0 / 3.0, bond_range=(5.5, 6.5),
)


def trace_report(trace: Tensor | np.ndarray, mask: Tensor | np.ndarray, spec: TraceSpec = PROTEIN_TRACE,
                 ) -> dict[str, Tensor]:
    """Geometry of traces under the key names of the module docstring (computed in float64 on the CPU).

    Args:
        trace: ``[..., L, 3]`` trace atoms (Å), torch or numpy.
        mask: ``[..., L]`` residues with a trace atom (bool or 0/1).
        spec: the molecule type's constants (:data:`PROTEIN_TRACE`, :data:`RNA_TRACE`).
    Returns:
        ``{key: [...] float64}`` for the keys :meth:`TraceSpec.report_keys`, in that order.
    """
    trace = torch.as_tensor(trace).detach().to("cpu", torch.float64)
    mask = torch.as_tensor(mask).detach().to("cpu").bool()
    if trace.shape[-1] != 3 or mask.shape != trace.shape[:-1]:
        raise ValueError(f"trace_report: expected trace [..., L, 3] and mask [..., L], got {tuple(trace.shape)} "
                         f"and {tuple(mask.shape)}")
    length = mask.sum(-1).double()
    dist, valid = ca_ca_distances(trace, mask)
    pairs = valid.double()
    clashes = count_clashes(trace, mask, threshold=spec.clash_distance, min_seq_sep=spec.clash_min_seq_sep).double()
    rg = radius_of_gyration(trace, mask)
    out = {
        "length": length,
        f"{spec.bond}_mean": (dist * pairs).sum(-1) / pairs.sum(-1),
        f"{spec.bond}_deviation": ca_ca_deviation(trace, mask, ideal=spec.ideal_bond),
    }
    if spec.bond_range is not None:
        low, high = spec.bond_range
        out[f"{spec.bond}_in_range"] = (((dist >= low) & (dist <= high)).double() * pairs).sum(-1) / pairs.sum(-1)
    out["clashes"] = clashes
    out["clashes_per_100"] = 100.0 * clashes / length.clamp_min(1.0)
    out["rg"] = rg
    out["rg_ratio"] = rg / folded_rg(length, spec.rg_prefactor, spec.rg_exponent)
    return out


def report_rows(report: Mapping[str, Tensor]) -> list[dict[str, float]]:
    """One dict of floats per chain from a report of ``[B]`` tensors (e.g. :func:`trace_report` of a batch)."""
    sizes = {tuple(v.shape) for v in report.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"report_rows: expected [B] values, got shapes {sorted(sizes)}")
    size = next(iter(sizes))[0]
    return [{k: float(v[b]) for k, v in report.items()} for b in range(size)]
