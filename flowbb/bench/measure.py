"""Timing and peak memory of a piece of work, inside a benchmark point's process (torch imported only for CUDA).

Timing (:func:`time_calls`): ``warmup`` untimed calls, then ``repeats`` timed ones (``time.perf_counter``, CUDA
synchronised before and after each). Both the **median** (``seconds``: what tables and exponent fits use) and the
**minimum** (``seconds_min``) are reported, with every repeat (``times``).

Peak memory (:func:`peak_memory`), extra over the state just before the work:

* CPU: the peak resident set size during the work (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
  resident size before it (``VmRSS``), after a garbage collection. With ``pin_malloc`` glibc's mmap threshold is
  fixed and the heap trimmed first, so that blocks freed by earlier calls cannot hide the work's allocations.
* CUDA: ``torch.cuda.max_memory_allocated`` minus ``torch.cuda.memory_allocated`` before (peak statistics reset).

:func:`measure` combines the two with one of two memory protocols: ``"after"`` (one extra call after the timed ones,
malloc pinned: the steady-state extra memory of a call) or ``"during"`` (the peak over the warm-up and timed calls:
counts what the first call allocates and keeps, e.g. optimizer state).
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from flowbb.memory import reset_peak_rss, rss_bytes

MB = 2**20
#: the highest ``VmHWM`` (bytes) of this process before :func:`peak_memory` reset it (read by flowbb.bench.child)
PEAK_BEFORE_RESETS = 0


class PeakReading:
    """The result of a :func:`peak_memory` block: ``bytes`` (and ``mb``) once the block has exited."""

    bytes: int | None = None

    @property
    def mb(self) -> float | None:
        """Peak extra memory in MiB (``None`` before the block exits)."""
        return None if self.bytes is None else self.bytes / MB


def _is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def _sync(device: str) -> None:
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize()


def setup_torch(device: str = "cpu", threads: int = 0, flush_denormal: bool = True) -> None:
    """Per-point torch settings, before any work: flush denormals to zero on CPU (as training does; far softmax
    tails are otherwise denormal floats, an order of magnitude slower on CPU) and ``threads`` intra-op threads
    (0: torch's default)."""
    import torch

    if not _is_cuda(device) and flush_denormal:  # before the thread pool exists, so its threads inherit the mode
        torch.set_flush_denormal(True)
    if threads > 0:
        torch.set_num_threads(threads)


def pin_malloc() -> None:
    """Fix glibc's mmap threshold (blocks of 64 KiB and up are mmapped, and returned on free) and trim the heap."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.mallopt(m_trim_threshold, 128 * 1024)
    libc.malloc_trim(0)


@contextlib.contextmanager
def peak_memory(device: str = "cpu", pin: bool = False) -> Iterator[PeakReading]:
    """Measure the peak extra memory of the block (see the module docstring); read ``.bytes`` / ``.mb`` after it.

    Args:
        device: ``"cpu"`` (resident set size) or ``"cuda[:i]"`` (allocated CUDA memory).
        pin: on CPU, :func:`pin_malloc` first.

    Raises:
        RuntimeError: on CPU, when the kernel refuses to reset the peak resident size.
    """
    reading = PeakReading()
    gc.collect()
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield reading
        torch.cuda.synchronize()
        reading.bytes = torch.cuda.max_memory_allocated() - base
        return
    if pin:
        pin_malloc()
    base = rss_bytes("VmRSS")
    global PEAK_BEFORE_RESETS
    PEAK_BEFORE_RESETS = max(PEAK_BEFORE_RESETS, rss_bytes("VmHWM"))
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak resident size (/proc/self/clear_refs)")
    yield reading
    reading.bytes = max(rss_bytes("VmHWM") - base, 0)


def time_calls(run: Callable[[], Any], repeats: int = 3, warmup: int = 1, device: str = "cpu") -> dict[str, Any]:
    """``warmup`` untimed calls of ``run``, then ``repeats`` timed ones.

    Returns:
        ``{"seconds": median, "seconds_min": minimum, "times": [every repeat], "repeats", "warmup"}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        run()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "seconds_min": min(times), "times": times,
            "repeats": repeats, "warmup": warmup}


def measure(run: Callable[[], Any], device: str = "cpu", repeats: int = 3, warmup: int = 1,
            memory: str = "after", release: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Time ``run`` (:func:`time_calls`) and read its peak extra memory (:func:`peak_memory`).

    Args:
        run: one unit of work (its return value is dropped).
        device: where it runs (``cpu`` / ``cuda[:i]``).
        repeats, warmup: as for :func:`time_calls`.
        memory: ``"after"``: one more call after the timed ones, malloc pinned on CPU; ``"during"``: the peak
            over the warm-up and timed calls (first-call allocations that stay, e.g. optimizer state, count).
        release: with ``"after"``, called before the memory call to drop what the timed calls left alive
            (e.g. gradients), so that the baseline does not hold it.

    Returns:
        :func:`time_calls`'s dict plus ``peak_mem_mb`` (MiB) and ``memory_protocol``.
    """
    if memory == "during":
        with peak_memory(device) as peak:
            out = time_calls(run, repeats, warmup, device)
    elif memory == "after":
        out = time_calls(run, repeats, warmup, device)
        if release is not None:
            release()
        with peak_memory(device, pin=True) as peak:
            run()
    else:
        raise ValueError(f"memory must be 'after' or 'during', got {memory!r}")
    out.update(peak_mem_mb=peak.mb, memory_protocol=memory)
    return out
