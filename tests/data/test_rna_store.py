"""RNA chains through preprocessing, the processed store, the dataset and the datamodule (data=rna), on real files
of ../shared/data/rna (and real protein files beside them: one store serves both types)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from flowbb.data.datamodule import ProteinDataModule
from flowbb.data.dataset import ProteinChainDataset, collate
from flowbb.data.nucleic import read_rna_chains
from flowbb.data.preprocess import preprocess
from flowbb.data.store import ARRAYS, LAYOUTS, METADATA, ProcessedStore
from flowbb.geometry import rna

REPO = Path(__file__).resolve().parents[2]
RNA_FILES = [
    "medium__1XJR__A.pdb.gz",
    "grnade__RCSB__B.pdb.gz",
    "rna3dbench__6JQ5_clean_fixed__A.pdb.gz",
    "medium__R1107__A.pdb.gz",  # CASP: held out
    "medium__rp03__A.pdb.gz",  # RNA-Puzzles: held out
    "rnapuzzles__3_solution__A.pdb.gz",  # RNA-Puzzles: held out
]
PARTIAL = "partial__1XJR__A.pdb"  # 1XJR with atoms removed from three nucleotides


def _partial_copy(src: Path, dest: Path) -> None:
    """``src`` without P/OP1/OP2 of its 5th nucleotide, without C1' of its 8th, and without C4' of its 12th."""
    with gzip.open(src, "rt") as handle:
        lines = handle.read().splitlines()
    numbers = list(dict.fromkeys(l[22:27] for l in lines if l.startswith("ATOM")))
    drop = {(numbers[4], n) for n in ("P", "OP1", "OP2")} | {(numbers[7], "C1'"), (numbers[11], "C4'")}
    kept = [l for l in lines if not (l.startswith("ATOM") and (l[22:27], l[12:16].strip()) in drop)]
    dest.write_text("\n".join(kept) + "\n")


@pytest.fixture(scope="module")
def mixed_raw(tmp_path_factory, shared_data, ddg_files, copy_to) -> Path:
    raw = copy_to([shared_data / "rna" / f for f in RNA_FILES] + ddg_files[:2], tmp_path_factory.mktemp("raw"))
    _partial_copy(shared_data / "rna" / RNA_FILES[0], raw / PARTIAL)
    return raw


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory, mixed_raw) -> Path:
    out = tmp_path_factory.mktemp("processed") / "mixed"
    preprocess(mixed_raw, out, num_workers=0, progress=False)
    return out


def test_store_round_trip_of_real_rna_chains(mixed_store, mixed_raw):
    store = ProcessedStore(mixed_store)
    meta = store.metadata
    assert sorted(set(meta["molecule"])) == ["protein", "rna"]
    rna_rows = meta.index[meta["molecule"] == "rna"]
    assert len(rna_rows) == len(RNA_FILES) + 1
    for row in rna_rows:
        record = meta.loc[row]
        (chain,) = read_rna_chains(mixed_raw / record["source_file"])
        arrays = store.chain(row)
        assert arrays["atoms"].shape == (chain.length, 12, 3) and record["length"] == chain.length
        np.testing.assert_array_equal(arrays["atoms"], chain.atoms)
        np.testing.assert_array_equal(arrays["atom_mask"], chain.atom_mask)
        np.testing.assert_array_equal(arrays["residue_numbers"], chain.residue_numbers)
        np.testing.assert_array_equal(arrays["residue_index"], chain.residue_index)
        assert record["sequence"] == chain.sequence and record["num_chain_breaks"] == chain.chain_breaks
        assert record["modeled_length"] == int(chain.res_mask.sum())
        assert np.isnan(record["coil_frac"]) and record["radius_of_gyration"] > 10.0
    for name in LAYOUTS["rna"].arrays:
        assert (mixed_store / f"rna_{name}.npy").is_file()


def test_partial_nucleotides_are_kept_and_logged(mixed_store, mixed_raw):
    meta = ProcessedStore(mixed_store).metadata.set_index("source_file")
    full, partial = meta.loc[RNA_FILES[0]], meta.loc[PARTIAL]
    assert partial["length"] == full["length"] and partial["modeled_length"] == full["modeled_length"] - 1
    files = pd.read_csv(mixed_store / "files.csv", keep_default_na=False).set_index("source_file")
    assert files.loc[PARTIAL, "status"] == "ok"
    log = (mixed_store / "preprocess.log").read_text()
    line = next(l for l in log.splitlines() if "NUCLEOTIDES" in l and PARTIAL in l)
    assert "3 of" in line and "missing frame atoms (1)" in line and "missing atoms (2)" in line


def test_protein_arrays_as_without_rna(mixed_store, mixed_raw, tmp_path, ddg_files, copy_to):
    """The protein chains of a mixed store are stored exactly as in a protein-only store."""
    protein_only = tmp_path / "protein"
    preprocess(copy_to(ddg_files[:2], tmp_path / "raw"), protein_only, num_workers=0, progress=False)
    for name in ARRAYS:
        assert (mixed_store / f"{name}.npy").read_bytes() == (protein_only / f"{name}.npy").read_bytes(), name
    mixed = pd.read_parquet(mixed_store / METADATA)
    mixed = mixed[mixed["molecule"] == "protein"].drop(columns="row").reset_index(drop=True)
    alone = pd.read_parquet(protein_only / METADATA).drop(columns="row")
    pd.testing.assert_frame_equal(mixed, alone)


def test_store_without_molecule_column_reads_as_protein(small_store, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ARRAYS:
        (old / f"{name}.npy").write_bytes((small_store / f"{name}.npy").read_bytes())
    pd.read_parquet(small_store / METADATA).drop(columns="molecule").to_parquet(old / METADATA)
    store = ProcessedStore(old)
    assert (store.metadata["molecule"] == "protein").all()
    ds = ProteinChainDataset(store)
    assert ds[0]["atoms"].shape[1:] == (4, 3) and int(ds[0]["molecule"]) == 0


def test_rna_items_carry_the_frame_atoms(mixed_store):
    store = ProcessedStore(mixed_store)
    rows = np.nonzero((store.metadata["molecule"] == "rna").to_numpy())[0]
    ds = ProteinChainDataset(store, rows)
    items = [ds[i] for i in range(3)]
    for item in items:
        assert item["atoms"].shape[1:] == (12, 3) and int(item["molecule"]) == 1
        assert torch.allclose(item["atoms"][:, 0].mean(0), torch.zeros(3), atol=1e-3)  # C4' centroid
        assert item["res_mask"].all()
    batch = collate(items)
    assert batch["atoms"].shape[2:] == (12, 3) and (batch["molecule"] == 1).all()
    rots, _, frame_mask = rna.frames_from_atoms(batch["atoms"].double(), batch["atom_mask"])
    assert torch.equal(frame_mask, batch["res_mask"].bool())
    eye = torch.eye(3, dtype=torch.float64).expand_as(rots[frame_mask])
    torch.testing.assert_close(rots[frame_mask].transpose(-1, -2) @ rots[frame_mask], eye)
    protein = ProteinChainDataset(store, np.nonzero((store.metadata["molecule"] == "protein").to_numpy())[0])
    with pytest.raises(ValueError, match="molecule types"):
        collate([items[0], protein[0]])


def test_rna_datamodule_holds_out_puzzles_and_casp(mixed_store):
    cfg = OmegaConf.load(REPO / "configs" / "data" / "rna.yaml")
    cfg.processed_dir = str(mixed_store)
    cfg.split.num_val_chains = 1
    cfg.batcher.max_tokens = 300
    dm = ProteinDataModule(**{k: v for k, v in cfg.items() if k != "_target_"})
    dm.setup("fit")
    meta = dm.train_dataset.store.metadata
    test_files = set(meta.loc[dm.test_dataset.rows, "source_file"])
    assert test_files == set(RNA_FILES[3:])
    seen = set(dm.train_dataset.rows) | set(dm.val_dataset.rows)
    assert not seen & set(dm.test_dataset.rows)
    assert set(meta.loc[sorted(seen), "molecule"]) == {"rna"} and len(seen) == 4
    for batch in dm.train_dataloader():
        b, n = batch["res_mask"].shape
        assert b * n <= 300 and batch["atoms"].shape[2] == 12 and (batch["molecule"] == 1).all()
    assert sorted(r for batch in dm.test_dataloader() for r in batch["row"].tolist()) == sorted(dm.test_dataset.rows)
    protein = ProteinDataModule(processed_dir=str(mixed_store), filters={"min_length": 40})
    protein.setup("fit")
    rows = np.concatenate([protein.train_dataset.rows, protein.val_dataset.rows])
    assert set(meta.loc[rows, "molecule"]) == {"protein"}


def test_rna_backbone_pdb_round_trip(shared_data, tmp_path):
    """The PDB writer with the 12 RNA atom names: a real chain, and its atoms rebuilt from frames + torsions with
    residue names N, read back by the RNA reader."""
    from flowbb.data.structure_io.write import write_backbone_pdb
    from flowbb.molecules import get_molecule

    (chain,) = read_rna_chains(shared_data / "rna" / RNA_FILES[1])
    mol = get_molecule("rna")
    path = write_backbone_pdb(tmp_path / "real.pdb", chain.atoms, residue_name=list(chain.sequence),
                              atom_mask=chain.atom_mask, atom_names=mol.pdb_atom_names(chain.sequence))
    (back,) = read_rna_chains(path)
    assert back.sequence == chain.sequence and np.array_equal(back.atom_mask, chain.atom_mask)
    np.testing.assert_allclose(back.atoms, chain.atoms, atol=1e-3)
    x = torch.as_tensor(chain.atoms, dtype=torch.float64)[None]
    m = torch.as_tensor(chain.atom_mask, dtype=torch.float64)[None]
    res_mask = m[..., :3].prod(-1)
    clean = mol.clean(x, m, res_mask, torch.arange(chain.length)[None])
    rebuilt = mol.rebuild(clean["rots_1"], clean["trans_1"], clean["torsions_1"], res_mask)[0]
    path = write_backbone_pdb(tmp_path / "rebuilt.pdb", rebuilt, residue_name=["N"] * chain.length,
                              atom_names=mol.pdb_atom_names("N" * chain.length))
    (back,) = read_rna_chains(path)
    assert back.sequence == "N" * chain.length and back.atom_mask.all()
    np.testing.assert_allclose(back.atoms, rebuilt.numpy(), atol=1e-3)
