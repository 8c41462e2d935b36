"""Self-consistency evaluation of a folder of backbone structures.

    python scripts/evaluate.py samples_dir=DIR out_dir=OUT [reference=PROCESSED_OR_PDB_DIR] \
        [folding=esmfold|tiny_random] [inverse_folding=proteinmpnn|proteinmpnn_ca] [folding.model_path=PATH] \
        [inverse_folding.num_seqs=8] [designable_rmsd=2.0] [seed=0]

Keys and defaults: configs/evaluate.yaml. Resumable: re-running with the same settings skips finished samples.
Writes OUT/sequences.csv, OUT/samples.csv, OUT/summary.json, PNG plots, OUT/per_sample/*.json, OUT/folded/.
The logic lives in flowbb.eval.runner; this script parses the config and prints errors and a short summary.
RNA samples (detected from the atoms, or molecule=rna): geometry, novelty and diversity on C4' traces and lociPARSE
pMoL (when installed); no designability (no RNA inverse-folding/folding weights); OUT/samples.csv, OUT/summary.json,
OUT/report.md.
Exit codes: 0 success, 2 configuration / input error or missing ESMFold weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


def fmt(x: float | None, spec: str = ".2f") -> str:
    """A summary number for the console (``n/a`` when missing)."""
    return "n/a" if x is None else format(x, spec)


def run(cfg: DictConfig) -> int:
    """Evaluate as configured; returns the process exit code."""
    from rich.console import Console

    from flowbb.data.structure_io.files import StructureReadError
    from flowbb.errors import UserError
    from flowbb.eval.folding import FoldingWeightsNotFound
    from flowbb.eval.runner import evaluate

    console = Console(stderr=True)
    for key in ("samples_dir", "out_dir"):
        if OmegaConf.is_missing(cfg, key) or not cfg.get(key):
            console.print(
                f"[red]error:[/red] {key}=... is required "
                "(python scripts/evaluate.py samples_dir=DIR out_dir=OUT [folding=tiny_random])"
            )
            return 2
    try:
        out_dir = Path(str(cfg.out_dir)).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluate_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        summary = evaluate(cfg)
    except FoldingWeightsNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (UserError, FileNotFoundError, StructureReadError, ValueError, ModuleNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2

    o = summary["overall"]
    if summary.get("molecule") == "rna":
        print_rna_summary(console, summary, out_dir)
        return 0
    if summary.get("meaningless"):
        console.print(f"[yellow]WARNING:[/yellow] {summary['warning']}")

    console.print(
        f"{summary['num_samples']} samples: designability {fmt(o['designability'], '.3f')} "
        f"({o['num_designable']}/{o['n']}), scRMSD mean {fmt(o['sc_rmsd_mean'])} / median {fmt(o['sc_rmsd_median'])} A, "
        f"scTM mean {fmt(o['sc_tm_mean'], '.3f')}, pLDDT {fmt(o['plddt_mean'], '.1f')}, "
        f"novelty max-TM mean {fmt(o['novelty']['max_tm_mean'], '.3f')}, "
        f"diversity: {o['diversity']['num_clusters']} clusters, mean pairwise TM {fmt(o['diversity']['mean_pairwise_tm'], '.3f')}"
    )
    console.print(f"results in {out_dir} (samples.csv, sequences.csv, summary.json, plots)")
    return 0


def print_rna_summary(console, summary: dict, out_dir: Path) -> None:
    """The short console summary of an RNA evaluation."""
    o, g = summary["overall"], summary["overall"]["geometry"]

    console.print(
        f"{summary['num_samples']} RNA samples: designability {summary['designability']}; "
        f"C4'-C4' mean {fmt(g['c4_c4_mean_mean'])} A (in 5.5-6.5 A: {fmt(g['c4_c4_in_range_mean'])}), "
        f"clashes/100 {fmt(g['clashes_per_100_mean'], '.1f')}, Rg ratio {fmt(g['rg_ratio_mean'])}, "
        f"pMoL (poly-A) {fmt(o['pmol_poly_a_mean'], '.3f')}, novelty max-TM mean {fmt(o['novelty']['max_tm_mean'], '.3f')}, "
        f"diversity: {o['diversity']['num_clusters']} clusters, mean pairwise TM "
        f"{fmt(o['diversity']['mean_pairwise_tm'], '.3f')}"
    )
    console.print(f"results in {out_dir} (samples.csv, summary.json, report.md)")


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    from flowbb.cli import exit_on_bad_command_line

    exit_on_bad_command_line("evaluate")
    main()
