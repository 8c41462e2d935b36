"""The one token-budget packer (flowbb.data.packing): budgets, and the same batches as each packer it replaced.

The references below are the four packers flowbb had before (the length batcher, ESMFold's ``length_batches``,
the evaluation's ``make_groups`` and the sampler's ``plan_batches``), kept here as oracles: for a given input and
seed, :func:`pack_batches` must give exactly their batches.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowbb.data.packing import UNLIMITED, BatchBudget, pack_batches


def _old_length_batcher(lengths: np.ndarray, order: np.ndarray, capacity) -> list[list[int]]:
    chosen = order[np.argsort(lengths[order], kind="stable")]
    batches, current = [], []
    for index in chosen.tolist():
        if current and len(current) + 1 > capacity(int(lengths[index])):
            batches.append(current)
            current = []
        current.append(index)
    return batches + [current] if current else batches


def _old_length_batches(lengths: list[int], max_tokens: int, max_batch_size: int | None) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, current = [], []
    for i in order:
        cand = current + [i]
        too_many = max_batch_size is not None and len(cand) > max_batch_size
        if current and (len(cand) * lengths[i] > max_tokens or too_many):
            batches.append(current)
            cand = [i]
        current = cand
    return batches + [current] if current else batches


def _old_make_groups(keys: list[tuple[int, str]], group_size: int) -> list[list[int]]:
    groups: list[list[int]] = []
    for i in sorted(range(len(keys)), key=lambda i: keys[i]):
        if groups and keys[groups[-1][0]][0] == keys[i][0] and len(groups[-1]) < group_size:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _old_plan_batches(lengths: list[int], samples_per_length: int, max_tokens: int) -> list[tuple[int, list[int]]]:
    plan = []
    for n in dict.fromkeys(lengths):
        size = max(1, max_tokens // n)
        for start in range(0, samples_per_length, size):
            plan.append((n, list(range(start, min(start + size, samples_per_length)))))
    return plan


def test_budget_capacity_and_fits() -> None:
    assert BatchBudget().capacity(100) == UNLIMITED
    assert BatchBudget(max_tokens=1000).capacity(300) == 3 and BatchBudget(max_tokens=1000).capacity(0) == 1000
    assert BatchBudget(max_squared_res=400_000).capacity(300) == 4
    assert BatchBudget(max_tokens=1000, max_squared_res=400_000, max_batch_size=2).capacity(100) == 2
    assert BatchBudget(max_tokens=1000).capacity(1001) == 0
    fits = BatchBudget(max_tokens=1000, max_squared_res=250_000).fits([10, 500, 501, 1001])
    assert fits.tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        BatchBudget(max_batch_size=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_batches_as_the_length_batcher(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(40, 700, size=500)
    order = rng.permutation(len(lengths))[:400]  # a shuffled subset, as an epoch's selection
    for budget in (BatchBudget(max_tokens=4096, max_batch_size=24), BatchBudget(max_squared_res=400_000)):
        order_fit = order[budget.fits(lengths[order])]
        expected = _old_length_batcher(lengths, order_fit, budget.capacity)
        by_length = order_fit[np.argsort(lengths[order_fit], kind="stable")]
        assert pack_batches(lengths, budget, order=by_length) == expected


@pytest.mark.parametrize(("max_tokens", "max_bs"), [(1000, None), (2048, 4), (100, 8)])
def test_same_batches_as_folding_length_batches(max_tokens: int, max_bs: int | None) -> None:
    lengths = np.random.default_rng(0).integers(20, 400, size=200).tolist()  # some above a 100-token budget
    got = pack_batches(lengths, BatchBudget(max_tokens=max_tokens, max_batch_size=max_bs))
    assert got == _old_length_batches(lengths, max_tokens, max_bs)
    assert sorted(i for b in got for i in b) == list(range(len(lengths)))


def test_same_groups_as_make_groups_and_same_plan_as_plan_batches() -> None:
    rng = np.random.default_rng(3)
    keys = [(int(n), f"s{i:03d}") for i, n in enumerate(rng.choice([50, 60, 70], size=40))]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    for size in (1, 3, 4, 100):
        got = pack_batches([k[0] for k in keys], BatchBudget(max_batch_size=size), order=order, same_length=True)
        assert got == _old_make_groups(keys, size)
    for lengths, per_length, max_tokens in (([100, 300, 100], 8, 1000), ([5000], 2, 1000), ([64, 16], 5, 128)):
        unique = list(dict.fromkeys(lengths))
        items = [n for n in unique for _ in range(per_length)]
        batches = pack_batches(items, BatchBudget(max_tokens=max_tokens), order=range(len(items)), same_length=True)
        plan = [(items[b[0]], [i % per_length for i in b]) for b in batches]
        assert plan == _old_plan_batches(lengths, per_length, max_tokens)


def test_oversized_items_get_batches_of_their_own_and_order_is_kept() -> None:
    lengths = [50, 2000, 60, 2000, 40]
    assert pack_batches(lengths, BatchBudget(max_tokens=1000)) == [[4, 0, 2], [1], [3]]
    # a given order is packed as given: equal-length runs, but never mixing lengths with same_length
    assert pack_batches([5, 5, 7, 5], BatchBudget(), order=[0, 1, 2, 3], same_length=True) == [[0, 1], [2], [3]]
    # the batch's longest chain sets the budget even when a shorter one comes after it: 2 x 7 <= 14, 3 x 7 > 14
    assert pack_batches([5, 5, 7, 5, 5], BatchBudget(max_tokens=14), order=range(5)) == [[0, 1], [2, 3], [4]]
    assert pack_batches([], BatchBudget(max_tokens=10)) == []
