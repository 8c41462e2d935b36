"""The molecule-type registry: codes, layouts, and each type's clean -> rebuild round trip on real chains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowbb.data.nucleic import read_rna_chains
from flowbb.data.store import LAYOUTS, MOLECULES
from flowbb.data.structure_io.read import read_chains
from flowbb.molecules import MOLECULE_NAMES, get_molecule, molecule_of


def test_registry_agrees_with_the_store():
    assert MOLECULES == MOLECULE_NAMES == ("protein", "rna")
    for code, name in enumerate(MOLECULE_NAMES):
        mol = get_molecule(name)
        assert get_molecule(code) is mol and mol.name == name
        assert mol.atom_names == LAYOUTS[name].atom_names
    assert (get_molecule("protein").num_torsions, get_molecule("rna").num_torsions) == (1, 8)
    assert molecule_of({}).name == "protein" and molecule_of({"molecule": torch.ones(3)}).name == "rna"
    with pytest.raises(ValueError, match="one molecule type"):
        molecule_of({"molecule": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="unknown molecule"):
        get_molecule("dna")


def _rebuild_rmsd(name: str, atoms: np.ndarray, atom_mask: np.ndarray) -> float:
    """Clean a real chain with the molecule type, rebuild its atoms from frames + torsions: RMSD (Å) over the atoms
    present in the file."""
    mol = get_molecule(name)
    x = torch.as_tensor(atoms, dtype=torch.float64)[None]
    m = torch.as_tensor(atom_mask, dtype=torch.float64)[None]
    res_mask = m[..., :3].prod(-1)
    clean = mol.clean(x, m, res_mask, torch.arange(x.shape[1])[None])
    if name == "protein":
        psi = clean["psi_1"]
        torsions = torch.stack([psi.sin(), psi.cos()], -1)[..., None, :]
        ok = m.bool() & res_mask.bool()[..., None]
        ok[..., 3] &= clean["psi_mask"]
    else:
        torsions, ok = clean["torsions_1"], m.bool() & res_mask.bool()[..., None]
    rebuilt = mol.rebuild(clean["rots_1"], clean["trans_1"], torsions, res_mask)
    assert rebuilt.shape == x.shape
    return float(((rebuilt - x)[ok] ** 2).sum(-1).mean().sqrt())


def test_clean_and_rebuild_real_chains(shared_data, ddg_files):
    (chain,) = read_rna_chains(shared_data / "rna" / "grnade__RCSB__B.pdb.gz")
    assert _rebuild_rmsd("rna", chain.atoms, chain.atom_mask) < 0.3
    protein = read_chains(ddg_files[0]).chains[0]
    assert _rebuild_rmsd("protein", protein.atoms, protein.atom_mask) < 0.3


def test_molecule_of_config_reads_data_molecule():
    """``data.molecule`` says the type (protein without the key); the torsion head must fit it."""
    from flowbb.molecules import get_molecule, molecule_of_config

    assert molecule_of_config({"data": {}, "model": {}}) is get_molecule("protein")
    assert molecule_of_config({"data": {"molecule": "rna"}, "model": {"num_torsions": 8}}) is get_molecule("rna")
    with pytest.raises(ValueError, match="num_torsions=8"):
        molecule_of_config({"data": {"molecule": "rna"}, "model": {"num_torsions": 1}})
    with pytest.raises(ValueError, match="unknown molecule"):
        molecule_of_config({"data": {"molecule": "dna"}, "model": {}})
