"""Token-budget packing: lengths + budget -> batches. The one packer behind every batcher of flowbb.

- training and validation batches (:class:`flowbb.data.batcher.LengthBatchSampler`; the budget's
  :meth:`BatchBudget.capacity` also sizes :class:`flowbb.data.batcher.TimeBatchSampler`'s repeated chains),
- ESMFold batches of designed sequences (:class:`flowbb.eval.folding.ESMFoldPredictor`),
- same-length groups of evaluated samples (:func:`flowbb.eval.samples.same_length_groups`),
- sampling batches of equal-length chains (``plan_batches`` of the sampler).

:func:`pack_batches` walks the items in a given order (default: by length, then index) and closes the current
batch when the next item would break the budget, i.e. when ``len(batch) + 1`` exceeds
:meth:`BatchBudget.capacity` of the batch's longest chain with that item (or, with ``same_length``, when the item's
length differs from the batch's). An item that alone breaks the budget gets a batch of its own; callers that must
leave such items out filter them first with :meth:`BatchBudget.fits`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: capacity of a budget without any limit
UNLIMITED = sys.maxsize


@dataclass(frozen=True)
class BatchBudget:
    """How many chains a batch may hold, given its longest chain ``L_max``; every limit that is set applies.

    Attributes:
        max_tokens: ``B * L_max <= max_tokens`` (FlashIPA: memory linear in L).
        max_squared_res: ``B * L_max**2 <= max_squared_res`` (FoldFlow/FrameFlow's rule for quadratic IPA).
        max_batch_size: ``B <= max_batch_size``.
    """

    max_tokens: int | None = None
    max_squared_res: int | None = None
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_squared_res", "max_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def capacity(self, max_length: int) -> int:
        """Largest B for a batch whose longest chain has ``max_length`` residues (0: not even one chain;
        :data:`UNLIMITED` without limits)."""
        length = max(int(max_length), 1)
        cap = UNLIMITED
        if self.max_tokens is not None:
            cap = min(cap, self.max_tokens // length)
        if self.max_squared_res is not None:
            cap = min(cap, self.max_squared_res // length**2)
        if self.max_batch_size is not None:
            cap = min(cap, self.max_batch_size)
        return int(cap)

    def fits(self, lengths: Sequence[int] | np.ndarray) -> np.ndarray:
        """``[N]`` bool: the chain fits in a batch alone (capacity >= 1).

        Args:
            lengths: ``[N]`` chain lengths.
        """
        lengths = np.asarray(lengths, dtype=np.int64)
        ok = np.ones(lengths.shape, dtype=bool)
        if self.max_tokens is not None:
            ok &= lengths <= self.max_tokens
        if self.max_squared_res is not None:
            ok &= lengths**2 <= self.max_squared_res
        return ok


def pack_batches(
    lengths: Sequence[int] | np.ndarray,
    budget: BatchBudget,
    order: Sequence[int] | np.ndarray | None = None,
    same_length: bool = False,
) -> list[list[int]]:
    """Greedy packing of items into consecutive batches under a budget (see the module docstring).

    Args:
        lengths: ``[N]`` lengths (tokens) of the items.
        budget: the per-batch limits.
        order: the indices to pack, in packing order (a subset of ``range(N)`` is fine; default: every index,
            sorted by length, then index). Batches of similar lengths need an order by length.
        same_length: a batch only holds items of one length.
    Returns:
        batches of indices into ``lengths``, in packing order; each index of ``order`` exactly once.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if order is None:
        order = np.argsort(lengths, kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in np.asarray(order, dtype=np.int64).tolist():
        n = int(lengths[index])
        if current and (
            len(current) + 1 > budget.capacity(max(longest, n)) or (same_length and n != longest)
        ):
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches
