"""Batch samplers of training and validation chains under a token budget, sharded over DDP ranks.

Two samplers, one per kind of batch (``data.batcher.mode`` picks one, :func:`make_batch_sampler`):

- :class:`LengthBatchSampler` (``mode: length``): chains of similar length per batch;
- :class:`TimeBatchSampler` (``mode: time``, FrameDiff/FoldFlow's ``time_batch``): every batch is ONE chain repeated
  as many times as the budget holds; the interpolant gives each copy its own t and prior draw, and the ``ot``
  coupling then pairs the batch's noise draws with the copies of that chain.

Per epoch (deterministic in ``seed`` and ``epoch``, identical on every rank):

1. pick the chains: all of them, or with ``clusters`` one chain per cluster drawn at random; chains that alone break
   the budget are left out (with a warning);
2. shuffle them (unless ``shuffle=False``) and form batches: length batches stable-sort the chains by length (equal
   lengths stay in random order), pack them with :func:`flowbb.data.packing.pack_batches` and shuffle the batches;
   time batches repeat each chain :meth:`~flowbb.data.packing.BatchBudget.capacity` times. The budget
   (:class:`flowbb.data.packing.BatchBudget`) is ``B * L_max <= max_tokens`` (``budget: tokens``; FlashIPA: memory
   linear in L) or ``B <= max_squared_res // L_max**2`` (``budget: squared``; FoldFlow/FrameFlow rule for quadratic
   IPA), and ``B <= max_batch_size``;
3. if the number of batches is not a multiple of the world size, repeat the first few so it is (fewer than
   ``num_replicas`` repeats: at most one extra batch per rank); rank r takes batches r, r+W, ...

Lightning sets the epoch through ``batch_sampler.sampler.set_epoch`` (the samplers expose a ``sampler`` that
forwards); call :meth:`~BudgetBatchSampler.set_epoch` yourself outside Lightning. With a custom batch sampler
Lightning must not inject its own distributed sampler: use ``Trainer(use_distributed_sampler=False)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np

from flowbb.data.packing import BatchBudget, pack_batches

log = logging.getLogger(__name__)


class _EpochForwarder:
    """``batch_sampler.sampler`` stand-in so that Lightning's ``_set_sampler_epoch`` reaches the batcher."""

    def __init__(self, owner: BudgetBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)

    def __len__(self) -> int:
        return sum(len(b) for b in self._owner.batches())


class BudgetBatchSampler:
    """Batches of dataset indices under a token (or squared-length) budget: chain selection, epochs, DDP sharding.
    Subclasses form the batches (:meth:`form_batches`).

    Args:
        lengths: [N] chain lengths (tokens) per dataset index.
        max_tokens: budget for ``B * L_max`` (``budget: tokens``).
        max_batch_size: cap on B (None: no cap).
        budget: "tokens" or "squared".
        max_squared_res: budget for ``B * L_max**2`` (``budget: squared``).
        clusters: [N] cluster id per index or None; one index per cluster per epoch when given.
        num_replicas, rank: DDP world size and this rank.
        seed: shared seed (same on all ranks).
        shuffle: False gives a fixed order (all indices; for validation).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_tokens: int | None = 16384,
        max_batch_size: int | None = None,
        budget: str = "tokens",
        max_squared_res: int | None = None,
        clusters: Sequence[int] | np.ndarray | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if budget not in ("tokens", "squared"):
            raise ValueError(f"budget must be 'tokens' or 'squared', got {budget!r}")
        if budget == "tokens" and not max_tokens:
            raise ValueError("budget 'tokens' needs max_tokens")
        if budget == "squared" and not max_squared_res:
            raise ValueError("budget 'squared' needs max_squared_res")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside world size {num_replicas}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_tokens = max_tokens
        self.max_batch_size = max_batch_size
        self.budget = budget
        self.max_squared_res = max_squared_res
        self.limits = BatchBudget(
            max_tokens=max_tokens if budget == "tokens" else None,
            max_squared_res=max_squared_res if budget == "squared" else None,
            max_batch_size=max_batch_size,
        )
        self.clusters = None if clusters is None else np.asarray(clusters, dtype=np.int64)
        if self.clusters is not None and len(self.clusters) != len(self.lengths):
            raise ValueError(f"{len(self.clusters)} cluster ids for {len(self.lengths)} lengths")
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.sampler = _EpochForwarder(self)
        self._cache: tuple[int, list[list[int]]] | None = None
        self.num_oversized = int((~self.limits.fits(self.lengths)).sum())
        if self.num_oversized:
            log.warning("%d chains exceed the batch budget alone and are never sampled", self.num_oversized)

    def capacity(self, max_length: int) -> int:
        """Largest B allowed for a batch whose longest chain has ``max_length`` residues."""
        return self.limits.capacity(max_length)

    # ------------------------------------------------------------ epoch plan
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (changes chain selection, grouping and order; same on every rank)."""
        self.epoch = int(epoch)

    def _select(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.lengths)
        if self.clusters is None or not self.shuffle:
            chosen = np.arange(n)
        else:
            order = rng.permutation(n)
            _, first = np.unique(self.clusters[order], return_index=True)
            chosen = np.sort(order[first])
        return chosen[self.limits.fits(self.lengths[chosen])]

    def form_batches(self, chosen: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        """Batches of one epoch from the chosen indices (``[M]``, shuffled unless ``shuffle=False``)."""
        raise NotImplementedError

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of an epoch before sharding (list of index lists)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        chosen = self._select(rng)
        if self.shuffle:
            chosen = rng.permutation(chosen)
        return self.form_batches(chosen, rng)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of an epoch (every rank gets the same number)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        batches = self.global_batches(epoch)
        world = self.num_replicas
        if batches and len(batches) % world:
            extra = world - len(batches) % world
            batches = batches + [batches[i % len(batches)] for i in range(extra)]
        mine = batches[self.rank :: world]
        self._cache = (epoch, mine)
        return mine

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class LengthBatchSampler(BudgetBatchSampler):
    """Length batches: chains of similar length per batch, packed up to the budget (arguments: see
    :class:`BudgetBatchSampler`). With ``shuffle=False`` the batches come in ascending length, every chain once."""

    def form_batches(self, chosen: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        """Stable sort by length, :func:`~flowbb.data.packing.pack_batches`, then shuffle the batches."""
        order = chosen[np.argsort(self.lengths[chosen], kind="stable")]
        batches = pack_batches(self.lengths, self.limits, order=order)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches


class TimeBatchSampler(BudgetBatchSampler):
    """Time batches: each batch is one chain repeated as many times as the budget holds (arguments: see
    :class:`BudgetBatchSampler`; training only: a chain's copies differ only in their t and prior draw)."""

    def form_batches(self, chosen: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        """``[index] * capacity(L_index)`` for each chosen index, in the (shuffled) order given."""
        return [[index] * self.capacity(int(self.lengths[index])) for index in chosen.tolist()]


#: ``data.batcher.mode`` -> the sampler that makes that kind of batch
BATCH_SAMPLERS: dict[str, type[BudgetBatchSampler]] = {"length": LengthBatchSampler, "time": TimeBatchSampler}


def make_batch_sampler(mode: str, lengths: Sequence[int] | np.ndarray, **kwargs) -> BudgetBatchSampler:
    """The sampler of ``mode`` (``length`` | ``time``, :data:`BATCH_SAMPLERS`) over ``lengths`` ``[N]``; ``kwargs``
    as :class:`BudgetBatchSampler`."""
    if mode not in BATCH_SAMPLERS:
        raise ValueError(f"batcher mode must be one of {tuple(BATCH_SAMPLERS)}, got {mode!r}")
    return BATCH_SAMPLERS[mode](lengths, **kwargs)


def batch_statistics(batches: list[list[int]], lengths: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Chains per batch and padding fraction (padded tokens / all tokens of the padded batches)."""
    lengths = np.asarray(lengths)
    if not batches:
        return {"num_batches": 0, "chains_per_batch": 0.0, "padding_fraction": 0.0, "max_tokens_in_batch": 0}
    sizes = np.array([len(b) for b in batches])
    real = np.array([lengths[b].sum() for b in batches])
    padded = np.array([len(b) * lengths[b].max() for b in batches])
    return {
        "num_batches": len(batches),
        "chains_per_batch": float(sizes.mean()),
        "padding_fraction": float(1.0 - real.sum() / padded.sum()),
        "max_tokens_in_batch": int(padded.max()),
        "max_squared_in_batch": int(max(len(b) * int(lengths[b].max()) ** 2 for b in batches)),
    }
