"""Dataset items, collate padding, filters, clusters, and the LightningDataModule on a small real store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from flowbb.data.clusters import compute_clusters, kmer_clusters
from flowbb.data.datamodule import ProteinDataModule, split_by_cluster
from flowbb.data.dataset import ProteinChainDataset, collate
from flowbb.data.filters import FilterConfig, filter_mask
from flowbb.data.structure_io.read import read_chains


def test_items_are_centred_and_collate_pads_with_zeros(small_store):
    ds = ProteinChainDataset(small_store)
    items = [ds[i] for i in range(3)]
    for item in items:
        ca = item["atoms"][:, 1]
        assert torch.allclose(ca.mean(0), torch.zeros(3), atol=1e-3)
        assert item["res_mask"].all() and item["residue_index"][0] == 0
        assert (item["residue_index"].diff() > 0).all()
    batch = collate(items)
    lengths = [int(i["length"]) for i in items]
    assert batch["atoms"].shape == (3, max(lengths), 4, 3) and batch["lengths"].tolist() == lengths
    for b, n in enumerate(lengths):
        assert batch["res_mask"][b, :n].all() and not batch["res_mask"][b, n:].any()
        assert (batch["atoms"][b, n:] == 0).all() and (batch["residue_index"][b, n:] == 0).all()
        assert (batch["atom_mask"][b, n:] == 0).all()
    assert batch["residue_index"].dtype == torch.long and batch["res_mask"].dtype == torch.float32


def test_filters():
    meta = pd.DataFrame(
        {
            "modeled_length": [50, 100, 300, 600, 200, 200],
            "resolution": [2.0, np.nan, 6.0, 1.0, 1.5, 1.5],
            "coil_frac": [0.2, 0.2, 0.2, 0.2, 0.8, 0.2],
            "radius_of_gyration": [10.0, 14.0, 20.0, 30.0, 16.0, 60.0],
            "num_chain_breaks": [0, 0, 0, 0, 0, 3],
            "num_chains_in_file": [1, 2, 1, 1, 1, 1],
            "oligomeric_detail": [None, "monomeric", None, "dimeric", None, None],
            "method": [
                "X-RAY DIFFRACTION",
                "SOLUTION NMR",
                "X-RAY DIFFRACTION",
                "ELECTRON MICROSCOPY",
                "X",
                "X",
            ],
        }
    )
    keep, removed = filter_mask(
        meta,
        FilterConfig(
            min_length=60,
            max_length=512,
            max_resolution=5.0,
            max_coil_frac=0.5,
            rg_factor=3.0,
            max_chain_breaks=2,
            monomer_only=True,
        ),
    )
    assert keep.tolist() == [False, True, False, False, False, False]
    assert removed == {
        "min_length": 1,
        "max_length": 1,
        "max_resolution": 1,
        "max_coil_frac": 1,
        "rg_outlier": 1,
        "max_chain_breaks": 1,
        "monomer_only": 1,
    }
    keep, _ = filter_mask(meta, FilterConfig(min_length=60, max_length=None))
    assert keep.tolist() == [False, True, True, True, True, True]
    keep, _ = filter_mask(meta, FilterConfig(min_length=None, max_length=None, methods=["X-RAY"]))
    assert keep.tolist() == [True, False, True, False, False, False]
    with pytest.raises(ValueError, match="unknown filter keys"):
        FilterConfig.from_dict({"max_len": 3})


def test_kmer_clusters_group_point_mutants(ddg_files):
    seqs = {f.name: read_chains(f).chains[0].sequence for f in ddg_files}
    lysozyme = [n for n, s in seqs.items() if s.startswith("MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGH")]
    assert len(lysozyme) >= 3
    names = sorted(seqs)
    labels = dict(zip(names, kmer_clusters([seqs[n] for n in names])))
    assert len({labels[n] for n in lysozyme}) == 1
    assert len(set(labels.values())) < len(names)
    exact = compute_clusters(pd.DataFrame({"sequence": [seqs[n] for n in names]}), method="exact")
    assert len(set(exact)) >= len(set(labels.values()))


def test_clusters_from_rcsb_file(tmp_path):
    meta = pd.DataFrame(
        {
            "pdb_id": ["1ABC", "1ABC", "2XYZ", "3QQQ"],
            "entity_id": ["1", "2", "1", None],
            "chain_id": ["A", "B", "A", "C"],
            "sequence": ["AAA", "CCC", "AAA", "DDD"],
        }
    )
    (tmp_path / "clusters.txt").write_text("2XYZ_1 1abc_1 9ZZZ_4\n1ABC_2\n")
    ids = compute_clusters(meta, clusters_file=tmp_path / "clusters.txt")
    assert ids[0] == ids[2] and len(set(ids)) == 3  # 3QQQ_C matches no line: its own cluster
    (tmp_path / "chains.txt").write_text("3QQQ_C 1ABC_B\n")
    ids = compute_clusters(meta, clusters_file=tmp_path / "chains.txt")
    assert ids[1] == ids[3]


def test_split_by_cluster_keeps_clusters_whole():
    clusters = np.repeat(np.arange(20), 3)
    train, val = split_by_cluster(clusters, 7, seed=1)
    assert len(val) >= 7 and not set(clusters[train]) & set(clusters[val])
    assert sorted(np.concatenate([train, val])) == list(range(60))


def test_datamodule_from_hydra_style_config(small_store):
    cfg = OmegaConf.create(
        {
            "processed_dir": str(small_store),
            "filters": {"min_length": 60, "max_length": 512},
            "clusters": {"enabled": True, "method": "exact"},
            "batcher": {"budget": "tokens", "max_tokens": 2048, "max_batch_size": 8},
            "split": {"num_val_chains": 2, "seed": 0},
        }
    )
    dm = ProteinDataModule(**cfg)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    seen = []
    for batch in loader:
        b, n = batch["res_mask"].shape
        assert b * n <= 2048 and b <= 8
        assert set(batch) == {"atoms", "atom_mask", "res_mask", "residue_index", "lengths", "row", "molecule"}
        assert (batch["molecule"] == 0).all()  # protein
        seen.extend(batch["row"].tolist())
    train_rows = set(dm.train_dataset.rows.tolist())
    assert set(seen) <= train_rows and len(seen) == len(set(seen))
    val_rows = [r for batch in dm.val_dataloader() for r in batch["row"].tolist()]
    assert len(val_rows) >= 2 and not set(val_rows) & train_rows
    assert dm.val_lengths() == [int(n) for n in dm.val_dataset.lengths]


def test_datamodule_time_batches_for_training_only(small_store):
    """``batcher.mode=time``: each training batch is copies of one real chain (same coordinates), validation
    still visits every validation chain once."""
    dm = ProteinDataModule(
        processed_dir=str(small_store),
        filters={"min_length": 60, "max_length": 512},
        clusters={"enabled": False},
        batcher={"mode": "time", "budget": "tokens", "max_tokens": 1024, "max_batch_size": 8},
        split={"num_val_chains": 2, "seed": 0},
    )
    dm.setup("fit")
    heads = []
    for batch in dm.train_dataloader():
        b, n = batch["res_mask"].shape
        assert b == min(1024 // n, 8) and len(set(batch["row"].tolist())) == 1
        assert torch.equal(batch["atoms"], batch["atoms"][:1].expand_as(batch["atoms"]))
        assert batch["res_mask"].all()  # copies of one chain: no padding
        heads.append(int(batch["row"][0]))
    assert sorted(heads) == sorted(dm.train_dataset.rows.tolist())
    val_rows = [r for batch in dm.val_dataloader() for r in batch["row"].tolist()]
    assert sorted(val_rows) == sorted(dm.val_dataset.rows.tolist())
