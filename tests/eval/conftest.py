"""Fixtures for the evaluation tests: small real chains from ``../shared/data`` (or ``tests/resources``) used as
"samples"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowbb.data.structure_io.read import read_chains
from flowbb.data.structure_io.write import write_backbone_pdb

# three small single-chain proteins of the ddg set (SH3 57 aa, BPTI 58 aa, cold-shock protein 67 aa)
SMALL_CHAINS = ("1SHG.pdb", "1BPI.pdb", "1CSP.pdb")


@pytest.fixture(scope="session")
def small_chain_files(core_data: Path) -> list[Path]:
    """Paths of three small real chains (read-only)."""
    files = [core_data / "pdb" / "ddg" / name for name in SMALL_CHAINS]
    missing = [f for f in files if not f.is_file()]
    if missing:
        pytest.skip(f"missing test structures: {missing}")
    return files


@pytest.fixture(scope="session")
def small_chains(small_chain_files: list[Path]) -> list:
    """First chain (ChainData) of each small file."""
    return [read_chains(f).chains[0] for f in small_chain_files]


@pytest.fixture(scope="session")
def samples_dir(
    small_chain_files: list[Path], small_chains: list, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Samples: copies of the three small chains, the first one's backbone again as a poly-GLY file in the
    sampler's layout (``length_57/sample_0.pdb``), and a trajectory file that must be skipped."""
    root = tmp_path_factory.mktemp("samples")
    for f in small_chain_files:
        shutil.copy(f, root / f.name)
    first = small_chains[0]
    write_backbone_pdb(root / f"length_{first.length}" / "sample_0.pdb", first.atoms, "GLY")
    write_backbone_pdb(
        root / f"length_{first.length}" / "sample_0_traj.pdb", first.atoms[None].repeat(2, 0), "GLY"
    )
    return root


@pytest.fixture(scope="session")
def reference_dir(small_chain_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A novelty reference folder holding copies of the three small chains."""
    root = tmp_path_factory.mktemp("reference")
    for f in small_chain_files:
        shutil.copy(f, root / f.name)
    return root


@pytest.fixture(scope="session")
def designer():
    """ProteinMPNN v_48_020 with its real weights, on CPU."""
    from flowbb.eval.inverse_folding import ProteinMPNNDesigner

    return ProteinMPNNDesigner(device="cpu")
