"""Length and time batch samplers: budgets, coverage across ranks, equal batch counts, determinism, clusters."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from flowbb.data.batcher import LengthBatchSampler, TimeBatchSampler, batch_statistics, make_batch_sampler


@pytest.fixture(scope="module")
def lengths() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 700, size=997)


def _all_ranks(lengths, world, epoch=0, mode="length", **kw):
    samplers = [make_batch_sampler(mode, lengths, num_replicas=world, rank=r, **kw) for r in range(world)]
    for s in samplers:
        s.set_epoch(epoch)
    return [list(s) for s in samplers]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_budget_coverage_and_equal_counts(lengths, world):
    kw = {"max_tokens": 4096, "max_batch_size": 24, "seed": 3}
    per_rank = _all_ranks(lengths, world, epoch=5, **kw)
    counts = {len(b) for b in per_rank}
    assert len(counts) == 1  # every rank the same number of batches
    for batches in per_rank:
        for batch in batches:
            assert len(batch) * lengths[batch].max() <= 4096 and len(batch) <= 24
    seen = Counter(i for batches in per_rank for batch in batches for i in batch)
    assert set(seen) == set(range(len(lengths)))  # every index, every epoch
    global_batches = LengthBatchSampler(lengths, **kw)
    global_batches.set_epoch(5)
    n_global = len(global_batches.global_batches())
    assert sum(len(b) for b in per_rank) - n_global < world  # fewer than one repeated batch per rank
    repeated = [i for i, c in seen.items() if c > 1]
    assert len(repeated) <= (world - 1) * 24


def test_squared_budget_and_oversized(lengths):
    sampler = LengthBatchSampler(lengths, budget="squared", max_squared_res=400_000, max_tokens=None)
    batches = list(sampler)
    assert all(len(b) <= 400_000 // int(lengths[b].max()) ** 2 for b in batches)
    assert sampler.num_oversized == int((lengths**2 > 400_000).sum()) > 0
    assert all(lengths[i] ** 2 <= 400_000 for b in batches for i in b)
    stats = batch_statistics(batches, lengths)
    assert stats["max_squared_in_batch"] <= 400_000


def test_determinism_and_epochs(lengths):
    a = LengthBatchSampler(lengths, max_tokens=8192, seed=11, num_replicas=2, rank=1)
    b = LengthBatchSampler(lengths, max_tokens=8192, seed=11, num_replicas=2, rank=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    b.sampler.set_epoch(2)  # Lightning's path: batch_sampler.sampler.set_epoch
    assert list(a) == list(b)
    c = LengthBatchSampler(lengths, max_tokens=8192, seed=12, num_replicas=2, rank=1)
    c.set_epoch(2)
    assert list(c) != list(a)


def test_groups_similar_lengths(lengths):
    batches = list(LengthBatchSampler(lengths, max_tokens=16384, seed=0))
    stats = batch_statistics(batches, lengths)
    assert stats["padding_fraction"] < 0.05 and stats["max_tokens_in_batch"] <= 16384


def test_one_chain_per_cluster_per_epoch(lengths):
    clusters = np.arange(len(lengths)) // 5  # clusters of five
    sampler = LengthBatchSampler(lengths, max_tokens=4096, clusters=clusters, seed=0)
    picks = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        chosen = [i for b in sampler for i in b]
        fitting = {int(c) for c in np.unique(clusters)}
        assert sorted(Counter(clusters[chosen]).values()) == [1] * len(fitting)
        picks.append(sorted(chosen))
    assert picks[0] != picks[1]


def test_validation_order_is_fixed(lengths):
    a = LengthBatchSampler(lengths, max_tokens=4096, shuffle=False)
    a.set_epoch(7)
    flat = [i for b in a for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert list(lengths[flat]) == sorted(lengths)


@pytest.mark.parametrize("budget", ["tokens", "squared"])
@pytest.mark.parametrize("world", [1, 3])
def test_time_batches_repeat_one_chain_up_to_the_budget(lengths, budget, world):
    kw = {"mode": "time", "budget": budget, "max_tokens": 4096, "max_squared_res": 400_000,
          "max_batch_size": 24, "seed": 2}
    per_rank = _all_ranks(lengths, world, epoch=1, **kw)
    assert len({len(b) for b in per_rank}) == 1
    sampler = make_batch_sampler(kw.pop("mode"), lengths, **kw)
    assert isinstance(sampler, TimeBatchSampler)
    sampler.set_epoch(1)
    global_batches = sampler.global_batches()
    fits = lengths <= 4096 if budget == "tokens" else lengths**2 <= 400_000
    fitting = np.flatnonzero(fits).tolist()
    assert sorted(b[0] for b in global_batches) == fitting  # every fitting chain heads exactly one batch
    for batches in per_rank:
        for batch in batches:
            n = int(lengths[batch[0]])
            cap = 4096 // n if budget == "tokens" else 400_000 // n**2
            assert batch == [batch[0]] * min(cap, 24)  # one chain, as many copies as the budget holds
    order = [b[0] for b in global_batches]
    assert order != sorted(order, key=lambda i: lengths[i])  # shuffled, not length-sorted
    sampler.set_epoch(2)
    assert [b[0] for b in sampler.global_batches()] != order


def test_time_batches_one_chain_per_cluster_and_bad_mode(lengths):
    clusters = np.arange(len(lengths)) // 5
    sampler = TimeBatchSampler(lengths, max_tokens=4096, clusters=clusters, seed=0)
    heads = [b[0] for b in sampler]
    assert sorted(Counter(clusters[heads]).values()) == [1] * len(np.unique(clusters))
    with pytest.raises(ValueError, match="batcher mode"):
        make_batch_sampler("times", lengths, max_tokens=4096)
