"""Geometry of sampled backbones beside real chains of similar length.

    python scripts/geometry_report.py --samples DIR --reference data/processed/shared \
        --min-length 90 --max-length 110 --out bench_results/geometry.json

For every backbone PDB under ``--samples`` (trajectory files skipped) and every chain of the processed
``--reference`` set whose modeled length lies in [min, max]: the geometry of flowbb.eval.metrics.backbone_metrics
(mean CA-CA distance and its mean deviation from 3.8 A, CA-CA clashes and clashes per 100 residues, radius of
gyration and its ratio to compact folded chains, DSSP helix/strand/coil fractions; key names of
flowbb.geometry.report). Prints a table of the two groups' means and writes them (mean, min, max per key, with the
per-structure rows) to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from flowbb.data.store import ProcessedStore
from flowbb.data.structure_io.read import read_chains
from flowbb.eval.metrics import backbone_metrics
from flowbb.eval.sample_quality import group_summary

KEYS = ("length", "ca_ca_mean", "ca_ca_deviation", "clashes", "clashes_per_100", "helix_frac", "strand_frac",
        "coil_frac", "rg", "rg_ratio")


def structure_row(atoms: np.ndarray, atom_mask: np.ndarray, sequence: str | None, name: str) -> dict:
    """Geometry of one backbone ``atoms [L, 4, 3]`` (A) with ``atom_mask [L, 4]`` (DSSP string left out)."""
    row = backbone_metrics(atoms[None], atom_mask[None], [sequence])[0]
    row.pop("secondary_structure")
    return {"name": name, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True, help="processed dataset folder")
    parser.add_argument("--min-length", type=int, default=90)
    parser.add_argument("--max-length", type=int, default=110)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    files = sorted(p for p in args.samples.rglob("*.pdb") if "traj" not in p.name)
    if not files:
        raise SystemExit(f"no backbone PDB files under {args.samples}")
    samples = []
    for path in tqdm(files, desc="samples"):
        chain = read_chains(path).chains[0]
        samples.append(structure_row(chain.atoms, chain.atom_mask, None, str(path)))

    store = ProcessedStore(args.reference)
    meta = store.metadata
    rows = meta.index[(meta["modeled_length"] >= args.min_length) & (meta["modeled_length"] <= args.max_length)]
    reference = []
    for row in tqdm(rows, desc="reference"):
        arrays = store.chain(int(row))
        reference.append(structure_row(arrays["atoms"], arrays["atom_mask"], meta.at[row, "sequence"],
                                       f"{meta.at[row, 'source_file']}:{meta.at[row, 'chain_id']}"))

    result = {"samples": group_summary(samples, KEYS), "reference": group_summary(reference, KEYS),
              "reference_lengths": [args.min_length, args.max_length],
              "sample_rows": samples, "reference_rows": reference}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    table = Table(title=f"geometry: {len(samples)} samples vs {len(reference)} real chains "
                        f"({args.min_length}-{args.max_length} residues)")
    table.add_column("metric")
    table.add_column("samples", justify="right")
    table.add_column("real chains", justify="right")
    for key in KEYS:
        table.add_row(key, f"{result['samples'][key]:.3f}", f"{result['reference'][key]:.3f}")
    Console().print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
