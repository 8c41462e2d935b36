"""What a sampling run will cost, measured before it starts, and per-step progress for long chains.

:func:`estimate_cost` times one network call (batch 1, no gradients) at two probe lengths on the real model and
device, fits ``seconds = a * L**p`` and ``bytes = b * L**q`` through the two points (exponents clipped to [1, 2]:
FlashIPA is linear in L, the kNN search and the quadratic IPA baseline are not), and scales to the planned batches:
a batch of B chains of length L runs ``num_steps + 1`` network calls costing about ``B * seconds(L)`` each and holds
about ``B * bytes(L)`` of activations beside the weights. Memory is CUDA's peak allocated memory, or on CPU the
peak of the allocations the PyTorch profiler records during the call (``None`` on other devices). Estimates from two
probes: good to a factor of about 2.

:func:`counting_model_fn` wraps a ``model_fn`` to report each call, which the sampler CLI shows as per-step progress
for batches that take long.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import torch

from flowbb.flow.config import FlowConfig
from flowbb.flow.sampler import ModelFn, res_mask_from_lengths
from flowbb.inference.generate import SampleBatch, SamplingSettings, draw_priors

Tensor = torch.Tensor


@dataclasses.dataclass
class SampleCost:
    """Estimated cost of a sampling run.

    Attributes:
        seconds: total seconds, all batches.
        seconds_per_length: seconds per requested length (all its samples).
        batch_seconds: estimated seconds of each planned batch, in plan order.
        peak_bytes: activations of the largest batch (weights not included); ``None`` when unmeasurable.
        weight_bytes: the network's parameters and buffers.
        probes: ``(L, seconds per call, bytes)`` of the measured calls.
    """

    seconds: float
    seconds_per_length: dict[int, float]
    batch_seconds: list[float]
    peak_bytes: float | None
    weight_bytes: int
    probes: list[tuple[int, float, float | None]]

    def describe(self, device: torch.device | str) -> str:
        """One line: total time, slowest length, memory."""
        worst = max(self.seconds_per_length, key=self.seconds_per_length.get)
        mem = ("memory not measurable here" if self.peak_bytes is None else
               f"about {_size(self.peak_bytes + self.weight_bytes)} peak ({_size(self.weight_bytes)} weights)")
        return (f"estimated {_duration(self.seconds)} on {device} (longest: L={worst}, "
                f"{_duration(self.seconds_per_length[worst])}), {mem}")


def _size(n: float) -> str:
    if n < 1e7:
        return f"{n / 1e6:.1f} MB"
    if n < 1e9:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e9:.1f} GB" if n < 1e11 else f"{n / 1e9:.0f} GB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop lines) for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_bytes(model_fn: ModelFn, batch: dict[str, Tensor]) -> float | None:
    """Peak bytes allocated by one call on CPU: the running sum of every op's own allocations and frees as the
    PyTorch profiler records them, in time order (``None`` when the profiler is unavailable)."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model_fn(batch)
        events = sorted(prof.events(), key=lambda e: e.time_range.start)
    except (RuntimeError, OSError):
        return None
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return float(peak)


@torch.no_grad()
def probe_call(model_fn: ModelFn, flow_cfg: FlowConfig, length: int, device: torch.device) -> tuple[float, float | None]:
    """Seconds and peak activation bytes of one network call on one chain of ``length`` residues (after a warm-up
    call): CUDA's peak allocated memory, or on CPU the profiler's allocation record."""
    rots, trans = draw_priors(flow_cfg, length, [0], device)
    mask = res_mask_from_lengths([length], device=device)
    batch = {"rots_t": rots, "trans_t": trans, "t": torch.full((1,), 0.5, device=device), "res_mask": mask,
             "residue_index": torch.arange(length, device=device)[None], "sc_trans": torch.zeros_like(trans)}
    model_fn(batch)  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    model_fn(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        return seconds, float(torch.cuda.max_memory_allocated(device) - base)
    return seconds, _cpu_peak_bytes(model_fn, batch) if device.type == "cpu" else None


def _power_fit(l1: int, y1: float, l2: int, y2: float) -> Callable[[int], float]:
    """``y(L) = y2 * (L / l2) ** p`` through both points, ``p`` clipped to [1, 2]."""
    p = math.log(max(y2, 1e-12) / max(y1, 1e-12)) / math.log(l2 / l1) if l2 != l1 else 1.0
    p = min(max(p, 1.0), 2.0)
    return lambda n: y2 * (n / l2) ** p


def estimate_cost(model: torch.nn.Module, model_fn: ModelFn, flow_cfg: FlowConfig, plan: Sequence[SampleBatch],
                  settings: SamplingSettings, device: torch.device | str, probe_max: int = 256) -> SampleCost:
    """Estimate the cost of sampling ``plan`` (see the module docstring).

    Args:
        model: the network (for its weight size).
        model_fn: ``model_fn(batch)`` as the sampler calls it.
        flow_cfg: the checkpoint's flow config.
        plan: the batches (:func:`flowbb.inference.generate.plan_batches`).
        settings: resolved sampler settings (``num_steps``).
        device: where the model runs.
        probe_max: the longer probe length is ``min(longest requested, probe_max)``; the shorter a quarter of it.
    """
    device = torch.device(device)
    longest = max(b.length for b in plan)
    l2 = max(min(longest, probe_max), 8)
    l1 = max(l2 // 4, 4)
    probes = [(n, *probe_call(model_fn, flow_cfg, n, device)) for n in (l1, l2)]
    time_of = _power_fit(probes[0][0], probes[0][1], probes[1][0], probes[1][1])
    have_mem = all(p[2] is not None for p in probes)
    mem_of = _power_fit(probes[0][0], probes[0][2], probes[1][0], probes[1][2]) if have_mem else None
    calls = int(settings.num_steps) + 1
    batch_seconds = [calls * len(b.indices) * time_of(b.length) for b in plan]
    per_length: dict[int, float] = {}
    for b, s in zip(plan, batch_seconds, strict=True):
        per_length[b.length] = per_length.get(b.length, 0.0) + s
    peak = max(len(b.indices) * mem_of(b.length) for b in plan) if mem_of is not None else None
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return SampleCost(seconds=sum(batch_seconds), seconds_per_length=per_length, batch_seconds=batch_seconds,
                      peak_bytes=peak, weight_bytes=weights, probes=probes)


def counting_model_fn(model_fn: ModelFn, on_call: Callable[[], None]) -> ModelFn:
    """``model_fn`` that calls ``on_call()`` after every network call (one per sampler step, plus the last)."""

    def wrapped(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = model_fn(batch)
        on_call()
        return out

    return wrapped


class StepProgress:
    """Per-step progress of the batches that take long: call it once per network call (:func:`counting_model_fn`);
    it opens a bar of ``calls_per_batch`` steps at the first call of each batch ``i`` with ``show(i)`` true.

    Args:
        plan: the batches, in the order the sampler runs them.
        calls_per_batch: network calls per batch (``num_steps + 1``).
        show: whether batch ``i`` gets a bar.
        make_bar: ``make_bar(total, description)`` -> an object with ``update(n)`` and ``close()`` (e.g. tqdm).
    """

    def __init__(self, plan: Sequence[SampleBatch], calls_per_batch: int, show: Callable[[int], bool],
                 make_bar: Callable[[int, str], object]) -> None:
        self.plan = list(plan)
        self.calls_per_batch = int(calls_per_batch)
        self.show = show
        self.make_bar = make_bar
        self.calls = 0
        self.bar: object | None = None

    def __call__(self) -> None:
        batch, step = divmod(self.calls, self.calls_per_batch)
        if step == 0 and batch < len(self.plan) and self.show(batch):
            b = self.plan[batch]
            self.bar = self.make_bar(self.calls_per_batch, f"L={b.length} x {len(b.indices)}")
        if self.bar is not None:
            self.bar.update(1)  # type: ignore[attr-defined]
            if step == self.calls_per_batch - 1:
                self.bar.close()  # type: ignore[attr-defined]
                self.bar = None
        self.calls += 1


def check_max_length(lengths: Sequence[int], max_length: int, force: bool) -> None:
    """Refuse lengths above ``max_length`` unless ``force``.

    Raises:
        UserError: naming the lengths, the limit and the two ways on (``force=true``, a higher ``max_length``).
    """
    from flowbb.errors import UserError

    over = sorted({n for n in lengths if n > max_length})
    if over and not force:
        raise UserError(f"lengths {over} exceed max_length={max_length} (sampling time and memory grow with L; a "
                        f"cost estimate is printed before sampling starts): pass force=true to sample them anyway, "
                        f"or raise max_length")
