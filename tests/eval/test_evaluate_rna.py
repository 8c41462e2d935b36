"""The evaluation of RNA samples: real RNA chains written as the sampler writes them (``RNA().write_pdb``: 12 atoms,
residues N, ``length_<L>/sample_<i>.pdb``) stand in for samples; no training, no folding model.

Checked: the molecule type is detected from the atoms (mixed folders refused), geometry columns equal
``rna_backbone_metrics`` of the same atoms, a chain's novelty against a reference holding it is ~1.0 (folder and
processed-store references), diversity per length, the summary says designability is not available, resume, and
the CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from flowbb.data.nucleic import read_rna_chains
from flowbb.eval.metrics import rna_backbone_metrics
from flowbb.eval.rna_quality import lociparse_available
from flowbb.eval.samples import DESIGNABILITY_NOT_AVAILABLE_RNA, detect_molecule, discover_samples
from flowbb.molecules.rna import RNA

REPO = Path(__file__).resolve().parents[2]
#: real chains used as samples; the first is bundled in tests/resources (plain clones), the others need shared data
RNA_FILES = ("medium__1XJR__A.pdb.gz", "medium__7jl2_x__X.pdb.gz")


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


@pytest.fixture(scope="module")
def rna_files(core_data: Path) -> list[Path]:
    files = [core_data / "rna" / n for n in RNA_FILES if (core_data / "rna" / n).is_file()]
    assert files, f"no RNA test chain under {core_data / 'rna'}"
    return files


@pytest.fixture(scope="module")
def rna_samples_dir(rna_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each chain as ``length_<L>/sample_0.pdb``; the first chain again, every atom moved 0.2 Å at random, as
    ``sample_1`` (same length: a diversity pair); a trajectory file (skipped) and the sampler's samples.csv."""
    root = tmp_path_factory.mktemp("rna_samples")
    rng = np.random.default_rng(0)
    rows = []
    for k, f in enumerate(rna_files):
        chain = read_rna_chains(f)[0]
        ok = chain.atom_mask.all(1)  # a sample has every atom
        atoms = torch.from_numpy(chain.atoms[ok])
        folder = root / f"length_{len(atoms)}"
        RNA().write_pdb(folder / "sample_0.pdb", atoms)
        rows.append(f"{folder.name}/sample_0.pdb,{len(atoms)}")
        if k == 0:
            RNA().write_pdb(
                folder / "sample_1.pdb", atoms + torch.from_numpy(rng.normal(0, 0.2, atoms.shape)).float()
            )
            RNA().write_pdb(folder / "sample_0_traj.pdb", atoms[None].repeat(2, 1, 1, 1), models=True)
            rows.append(f"{folder.name}/sample_1.pdb,{len(atoms)}")
    (root / "samples.csv").write_text("path,length\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def rna_reference_dir(rna_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rna_reference")
    for f in rna_files:
        shutil.copy(f, root / f.name)
    return root


@pytest.fixture(scope="module")
def rna_run(rna_samples_dir: Path, rna_reference_dir: Path, tmp_path_factory) -> tuple[Path, list[str], dict]:
    from flowbb.eval.runner import evaluate

    out = tmp_path_factory.mktemp("rna_eval")
    overrides = [
        f"samples_dir={rna_samples_dir}",
        f"out_dir={out}",
        f"reference={rna_reference_dir}",
        "novelty.num_workers=0",
        "progress=false",
    ]
    return out, overrides, evaluate(compose_cfg(overrides))


def test_molecule_is_detected_and_mixed_folders_refused(
    rna_samples_dir: Path, small_chain_files: list[Path], tmp_path: Path
) -> None:
    files = discover_samples(rna_samples_dir)
    assert detect_molecule(files) == "rna" and detect_molecule(small_chain_files) == "protein"
    assert detect_molecule(small_chain_files, "rna") == "rna"  # explicit: no detection
    with pytest.raises(ValueError, match=r"mixes protein and RNA.*1SHG\.pdb.*sample_0\.pdb"):
        detect_molecule([small_chain_files[0], files[0]])
    bad = tmp_path / "bad.pdb"
    bad.write_text("not a structure\n")
    with pytest.raises(ValueError, match=r"cannot tell the molecule type.*bad\.pdb"):
        detect_molecule([bad])
    assert detect_molecule([bad, files[0]]) == "rna"  # the reader reports bad.pdb as unreadable
    with pytest.raises(ValueError, match="expected auto, protein or rna"):
        detect_molecule(files, "dna")


def test_rna_evaluation_outputs(rna_run: tuple, rna_samples_dir: Path, rna_files: list[Path]) -> None:
    out, _, summary = rna_run
    assert {p.name for p in out.iterdir()} >= {"samples.csv", "summary.json", "report.md", "per_sample"}
    assert summary["molecule"] == "rna" and summary["designability"] == DESIGNABILITY_NOT_AVAILABLE_RNA
    assert json.loads((out / "summary.json").read_text()) == summary
    assert DESIGNABILITY_NOT_AVAILABLE_RNA in (out / "report.md").read_text()
    df = pd.read_csv(out / "samples.csv").set_index("name")
    assert (
        len(df) == len(rna_files) + 1 and summary["num_samples"] == len(df) and summary["num_unreadable"] == 0
    )
    for name, row in df.iterrows():
        chain = read_rna_chains(rna_samples_dir / f"{name}.pdb")[0]
        atoms = torch.from_numpy(chain.atoms)[None]
        expected = rna_backbone_metrics(
            atoms, torch.ones(1, chain.length), torch.from_numpy(chain.atom_mask)[None]
        )[0]
        assert row["length"] == expected.pop("length") == row["num_modeled"]
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, key)
        # every sample is (a copy of) a reference chain: max-TM ~1 to it
        assert row["novelty_tm"] > 0.97 and row["novelty_compared"] >= 1, name
    first = f"length_{read_rna_chains(rna_files[0])[0].length}"
    assert df.loc[f"{first}/sample_0", "novelty_tm"] == pytest.approx(1.0, abs=1e-6)
    assert df.loc[f"{first}/sample_0", "novelty_match"] == f"{RNA_FILES[0]}:A"
    div = summary["per_length"][first.removeprefix("length_")]["diversity"]
    assert (
        div["n"] == 2 and div["num_pairs"] == 1 and div["num_clusters"] == 1 and div["mean_pairwise_tm"] > 0.9
    )
    assert summary["overall"]["diversity"]["n"] == len(df)
    if lociparse_available():
        assert df["pmol_poly_a"].between(0.0, 1.0).all() and summary["models"]["pmol"] == "lociPARSE"
    else:
        assert df["pmol_poly_a"].isna().all() and summary["models"]["pmol"] is None


def test_rna_run_resumes_and_refuses_other_settings(rna_run: tuple, tmp_path: Path, monkeypatch) -> None:
    from flowbb.eval import rna_eval, runner

    out, overrides, summary = rna_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setattr(
        rna_eval, "evaluate_rna_sample", lambda *a, **k: pytest.fail("finished sample recomputed")
    )
    again = [o if not o.startswith("out_dir=") else f"out_dir={copy}" for o in overrides]
    assert runner.evaluate(compose_cfg(again))["overall"] == summary["overall"]
    with pytest.raises(runner.EvaluationError, match="another evaluation configuration"):
        runner.evaluate(compose_cfg([*again, "novelty.min_length_ratio=0.8"]))


def test_processed_store_reference_gives_c4_traces(
    rna_reference_dir: Path, rna_samples_dir: Path, tmp_path: Path
) -> None:
    from flowbb.data.preprocess import preprocess
    from flowbb.eval.novelty import NoveltySearcher, load_reference
    from flowbb.eval.rna_eval import read_rna_sample

    preprocess(rna_reference_dir, tmp_path / "processed", num_workers=0, progress=False)
    from_store = load_reference(tmp_path / "processed", molecule="rna")
    from_files = load_reference(rna_reference_dir, molecule="rna")
    assert sorted(from_store.names) == sorted(from_files.names)
    sample = read_rna_sample(next(rna_samples_dir.glob("length_*/sample_0.pdb")), rna_samples_dir)
    with NoveltySearcher(from_store, num_workers=0) as searcher:
        assert searcher.search(sample.trace).max_tm > 0.97


def test_cli_on_rna_samples(
    rna_samples_dir: Path, rna_reference_dir: Path, small_chain_files: list[Path], tmp_path: Path
) -> None:
    base = [
        sys.executable,
        str(REPO / "scripts" / "evaluate.py"),
        "novelty.num_workers=0",
        "progress=false",
        "rna.pmol=false",
    ]
    out = tmp_path / "out"
    proc = subprocess.run(
        [*base, f"samples_dir={rna_samples_dir}", f"out_dir={out}", f"reference={rna_reference_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RNA samples: designability not available for RNA" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["molecule"] == "rna" and summary["models"]["pmol"] is None
    assert summary["overall"]["novelty"]["max_tm_mean"] > 0.97
    mixed = tmp_path / "mixed"
    shutil.copytree(rna_samples_dir, mixed)
    shutil.copy(small_chain_files[0], mixed / small_chain_files[0].name)
    proc = subprocess.run(
        [*base, f"samples_dir={mixed}", f"out_dir={tmp_path / 'out2'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (
        proc.returncode == 2
        and "mixes protein and RNA" in proc.stderr
        and small_chain_files[0].name in proc.stderr
    )
