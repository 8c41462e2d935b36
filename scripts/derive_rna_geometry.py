"""Re-derive the ideal nucleotide geometry of flowbb.geometry.rna from real RNA chains and compare.

    python scripts/derive_rna_geometry.py [--rna-dir ../shared/data/rna]

Reads every structure file of the folder (flowbb.data.nucleic), pools all nucleotides, prints the medians
measured by flowbb.geometry.rna.measure_ideal_geometry next to the module's constants (and the purine /
pyrimidine split of the glycosidic N), and exits 1 when they differ by more than 0.002 Å / 0.2 degrees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from flowbb.data.nucleic import read_rna_chains
from flowbb.data.structure_io.files import is_structure_file
from flowbb.geometry import rna

BOND_TOL, ANGLE_TOL = 0.002, 0.2


def pooled_nucleotides(rna_dir: Path) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """All nucleotides of all chains in ``rna_dir``: atoms float64 [N, 12, 3], mask [N, 12], is_purine [N]."""
    atoms, masks, purine = [], [], []
    for path in sorted(p for p in rna_dir.iterdir() if is_structure_file(p)):
        for chain in read_rna_chains(path):
            atoms.append(chain.atoms)
            masks.append(chain.atom_mask)
            purine.append(chain.is_purine)
    return (
        torch.from_numpy(np.concatenate(atoms)).double(),
        torch.from_numpy(np.concatenate(masks)),
        np.concatenate(purine),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rna"
    parser.add_argument("--rna-dir", type=Path, default=default)
    args = parser.parse_args()
    atoms, mask, purine = pooled_nucleotides(args.rna_dir)
    measured = rna.measure_ideal_geometry(atoms, mask)
    print(f"{len(atoms)} nucleotides from {args.rna_dir}")
    worst = 0.0
    for name, xyz in measured["local"].items():
        diff = max(abs(a - b) for a, b in zip(xyz, rna.IDEAL_LOCAL[name]))
        worst = max(worst, diff / BOND_TOL)
        print(f"local {name:4s} measured {xyz}  module {rna.IDEAL_LOCAL[name]}")
    for name in rna.IDEAL_BONDS:
        b, a, n = measured["bonds"][name], measured["angles"][name], measured["counts"][name]
        worst = max(
            worst, abs(b - rna.IDEAL_BONDS[name]) / BOND_TOL, abs(a - rna.IDEAL_ANGLES[name]) / ANGLE_TOL
        )
        print(
            f"{name:4s} bond {b:.4f} (module {rna.IDEAL_BONDS[name]:.4f})  "
            f"angle {a:.2f} (module {rna.IDEAL_ANGLES[name]:.2f})  n={n}"
        )
    for label, sel in (("purine N9", purine), ("pyrimidine N1", ~purine)):
        sub = rna.measure_ideal_geometry(atoms[torch.from_numpy(sel)], mask[torch.from_numpy(sel)])
        print(f"{label}: bond {sub['bonds']['N']:.4f} angle {sub['angles']['N']:.2f} n={sub['counts']['N']}")
    ok = worst <= 1.0
    print("constants match" if ok else "constants DIFFER from the measured medians")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
