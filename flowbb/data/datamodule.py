"""LightningDataModule: processed store -> filters -> clusters -> train/val split -> length batches.

Configured by ``configs/data/{pdb,demo,rna}.yaml`` (instantiated through ``_target_``). ``molecule`` chooses the
chains of one molecule type from the store (protein | rna); ``split.holdout`` (regular expressions on
``source_file``) moves matching chains to a test set that neither training nor validation sees. With ``demo`` set, the
demo set is built on first use in :meth:`ProteinDataModule.prepare_data` (see :mod:`flowbb.data.demo`).
Distributed training needs ``Trainer(use_distributed_sampler=False)``; ranks are read from the trainer.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import lightning as L
import numpy as np
import torch

from flowbb.data.batcher import BudgetBatchSampler, make_batch_sampler
from flowbb.data.clusters import compute_clusters
from flowbb.data.dataset import ProteinChainDataset, collate
from flowbb.data.filters import FilterConfig, filter_mask
from flowbb.data.store import MOLECULES, DatasetError, ProcessedStore, is_complete
from flowbb.plain import to_plain

log = logging.getLogger(__name__)



def split_by_cluster(clusters: np.ndarray, num_val_chains: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions for (train, val): whole clusters go to validation, in random order, until it holds at least
    ``num_val_chains`` chains (0: empty validation set). Deterministic in ``seed``."""
    n = len(clusters)
    if num_val_chains <= 0 or n == 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    unique = np.unique(clusters)
    rng = np.random.default_rng(seed)
    val_clusters: list[int] = []
    count = 0
    sizes = dict(zip(*np.unique(clusters, return_counts=True)))
    for cluster in rng.permutation(unique):
        if count >= num_val_chains or len(val_clusters) >= len(unique) - 1:
            break
        val_clusters.append(int(cluster))
        count += int(sizes[cluster])
    is_val = np.isin(clusters, val_clusters)
    return np.nonzero(~is_val)[0], np.nonzero(is_val)[0]


class ProteinDataModule(L.LightningDataModule):
    """Training/validation batches of protein chains (batch dicts: see :func:`flowbb.data.dataset.collate`).

    Args:
        processed_dir: folder written by ``scripts/preprocess.py``.
        filters: :class:`flowbb.data.filters.FilterConfig` fields.
        clusters: ``enabled`` (one chain per cluster per epoch), ``file`` (RCSB clusters file or null),
            ``method`` (exact | kmer | none), ``k``, ``min_similarity``.
        batcher: ``mode`` (length | time: one chain repeated per batch, training only), ``budget``
            (tokens | squared), ``max_tokens``, ``max_batch_size``, ``max_squared_res``.
        dataset: ``center``, ``drop_unmodeled``.
        split: ``num_val_chains`` (whole clusters moved to validation), ``seed``, ``holdout`` (regular expressions;
            chains whose ``source_file`` matches one, ``re.search``, form the test set, before filters and clusters).
        loader: ``num_workers``, ``pin_memory``, ``persistent_workers``.
        seed: batcher seed (shared by all ranks).
        demo: None, or ``raw_dir``, ``sources``, ``num_workers``, ``min_length`` to build the demo set.
        molecule: the molecule type of the chains used (``protein`` | ``rna``; a store may hold both).
    """

    def __init__(
        self,
        processed_dir: str | Path,
        filters: dict | None = None,
        clusters: dict | None = None,
        batcher: dict | None = None,
        dataset: dict | None = None,
        split: dict | None = None,
        loader: dict | None = None,
        seed: int = 0,
        demo: dict | None = None,
        molecule: str = "protein",
    ) -> None:
        super().__init__()
        if molecule not in MOLECULES:
            raise DatasetError(f"data.molecule must be one of {list(MOLECULES)}, got {molecule!r}")
        self.molecule = molecule
        self.processed_dir = Path(processed_dir)
        self.filter_cfg = FilterConfig.from_dict(to_plain(filters))
        self.cluster_cfg = {
            "enabled": True,
            "file": None,
            "method": "exact",
            "k": 3,
            "min_similarity": 0.5,
            **(to_plain(clusters) or {}),
        }
        self.batcher_cfg = {
            "mode": "length",
            "budget": "tokens",
            "max_tokens": 16384,
            "max_batch_size": None,
            "max_squared_res": None,
            **(to_plain(batcher) or {}),
        }
        self.dataset_cfg = {"center": True, "drop_unmodeled": True, **(to_plain(dataset) or {})}
        self.split_cfg = {"num_val_chains": 8, "seed": 0, "holdout": None, **(to_plain(split) or {})}
        self.loader_cfg = {
            "num_workers": 0,
            "pin_memory": False,
            "persistent_workers": False,
            **(to_plain(loader) or {}),
        }
        self.seed = int(seed)
        self.demo_cfg = to_plain(demo)
        self.train_dataset: ProteinChainDataset | None = None
        self.val_dataset: ProteinChainDataset | None = None
        self.test_dataset: ProteinChainDataset | None = None
        self.test_rows = np.zeros(0, dtype=np.int64)
        self.train_clusters: np.ndarray | None = None
        self.filter_counts: dict[str, int] = {}

    # ------------------------------------------------------------ lightning hooks
    def prepare_data(self) -> None:
        """Build the demo set when configured and missing (runs on one process per node)."""
        if self.demo_cfg:
            from flowbb.data.demo import ensure_demo

            ensure_demo(
                raw_dir=self.demo_cfg["raw_dir"],
                processed_dir=self.processed_dir,
                sources=self.demo_cfg.get("sources"),
                num_workers=int(self.demo_cfg.get("num_workers", 2)),
                min_length=int(self.demo_cfg.get("min_length", 40)),
            )

    def _held_out(self, metadata) -> np.ndarray:
        """bool [R]: chains of the test set (``split.holdout`` patterns on ``source_file``)."""
        patterns = [re.compile(p) for p in (self.split_cfg.get("holdout") or [])]
        files = metadata["source_file"].astype(str)
        return np.array([any(p.search(f) for p in patterns) for f in files], dtype=bool)

    def _filtered(self) -> tuple[ProcessedStore, np.ndarray]:
        """The store and the rows of ``molecule`` that pass the filters and are not held out.

        Raises:
            DatasetNotFoundError: ``processed_dir`` is not a complete processed dataset.
            DatasetError: no chain passes the filters.
        """
        store = ProcessedStore(self.processed_dir)
        of_type = (store.metadata["molecule"] == self.molecule).to_numpy()
        if not of_type.any():
            found = sorted(set(store.metadata["molecule"]))
            raise DatasetError(f"{self.processed_dir} holds no {self.molecule} chain (molecule types: {found}): "
                               f"preprocess {self.molecule} structure files into it, or set data.molecule")
        keep, self.filter_counts = filter_mask(store.metadata, self.filter_cfg)
        held_out = self._held_out(store.metadata)
        self.test_rows = np.nonzero(keep & of_type & held_out)[0]
        rows = np.nonzero(keep & of_type & ~held_out)[0]
        if len(rows) == 0:
            removed = {k: v for k, v in self.filter_counts.items() if v}
            worst = max(removed, key=removed.get) if removed else "min_length"
            worst = {"rg_outlier": "rg_factor"}.get(worst, worst)  # the config key of that filter
            raise DatasetError(
                f"no chain of the {len(store)} in {self.processed_dir} passes the filters (removed per filter: "
                f"{removed}): loosen data.filters.{worst} (or another data.filters.* key; null turns a filter off)"
            )
        return store, rows

    def check_data(self) -> None:
        """Fail now, with one line, on a missing or incomplete processed set or one that the filters empty (before
        a model or a Trainer is built). The demo set before its first use is skipped: ``prepare_data`` builds it.

        Raises:
            DatasetNotFoundError, DatasetError: see :meth:`_filtered`.
        """
        if self.demo_cfg and not is_complete(self.processed_dir):
            return
        self._filtered()

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        store, rows = self._filtered()
        meta = store.metadata
        cfg = self.cluster_cfg
        clusters = compute_clusters(
            meta.iloc[rows],
            clusters_file=cfg.get("file"),
            method=cfg.get("method", "exact"),
            k=int(cfg.get("k", 3)),
            min_similarity=float(cfg.get("min_similarity", 0.5)),
        )
        train_pos, val_pos = split_by_cluster(
            clusters, int(self.split_cfg["num_val_chains"]), int(self.split_cfg["seed"])
        )
        ds_kwargs = {
            "center": bool(self.dataset_cfg["center"]),
            "drop_unmodeled": bool(self.dataset_cfg["drop_unmodeled"]),
        }
        self.train_dataset = ProteinChainDataset(store, rows[train_pos], **ds_kwargs)
        self.val_dataset = ProteinChainDataset(store, rows[val_pos], **ds_kwargs)
        self.test_dataset = ProteinChainDataset(store, self.test_rows, **ds_kwargs)
        self.train_clusters = clusters[train_pos] if cfg.get("enabled", True) else None
        log.info(
            "data: %d chains in store, %d %s chains pass filters (removed per filter: %s), %d clusters; train %d, "
            "val %d, test (held out) %d",
            len(meta),
            len(rows),
            self.molecule,
            self.filter_counts,
            len(np.unique(clusters)),
            len(train_pos),
            len(val_pos),
            len(self.test_rows),
        )

    # ------------------------------------------------------------ loaders
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def batch_sampler(
        self, dataset: ProteinChainDataset, clusters: np.ndarray | None, shuffle: bool
    ) -> BudgetBatchSampler:
        """The batcher for a dataset (rank/world size from the trainer when attached): ``batcher.mode`` picks
        length or time batches (:func:`flowbb.data.batcher.make_batch_sampler`). Validation (``shuffle=False``)
        always makes length batches: every validation chain once per pass."""
        world, rank = self._world()
        cfg = self.batcher_cfg
        return make_batch_sampler(
            cfg["mode"] if shuffle else "length",
            dataset.lengths,
            max_tokens=cfg.get("max_tokens"),
            max_batch_size=cfg.get("max_batch_size"),
            budget=cfg.get("budget", "tokens"),
            max_squared_res=cfg.get("max_squared_res"),
            clusters=clusters,
            num_replicas=world,
            rank=rank,
            seed=self.seed,
            shuffle=shuffle,
        )

    def _loader(
        self, dataset: ProteinChainDataset, sampler: BudgetBatchSampler
    ) -> torch.utils.data.DataLoader:
        workers = int(self.loader_cfg["num_workers"])
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=bool(self.loader_cfg["pin_memory"]),
            persistent_workers=bool(self.loader_cfg["persistent_workers"]) and workers > 0,
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        self.setup("fit")
        return self._loader(
            self.train_dataset, self.batch_sampler(self.train_dataset, self.train_clusters, True)
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        self.setup("validate")
        return self._loader(self.val_dataset, self.batch_sampler(self.val_dataset, None, False))

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        """The held-out chains (``split.holdout``), every chain once, batched by length."""
        self.setup("test")
        return self._loader(self.test_dataset, self.batch_sampler(self.test_dataset, None, False))

    def val_lengths(self) -> list[int]:
        """Lengths of the validation chains (e.g. for validation by sampling)."""
        self.setup("validate")
        return [int(n) for n in self.val_dataset.lengths]
