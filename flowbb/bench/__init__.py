"""The benchmark harness shared by ``scripts/bench_*.py`` (no Lightning, no torch at import time).

* :mod:`flowbb.bench.harness` (parent side): one measurement point = one module-level function + JSON-able keyword
  arguments, run in a fresh Python process (:func:`~flowbb.bench.harness.run_point`), a sweep of points with
  progress, skips and partial saves (:func:`~flowbb.bench.harness.run_points`); failures, timeouts and
  out-of-memory kills raise :class:`~flowbb.bench.harness.PointError` naming the point.
* :mod:`flowbb.bench.measure` (child side): warm-up + timed repeats (median **and** minimum) and peak memory
  (CPU: peak resident set size over the work; CUDA: ``torch.cuda.max_memory_allocated``).
* :mod:`flowbb.bench.report`: log-log exponent fits (time and memory against L), and the JSON / markdown / PNG
  report with a printed summary.

Conventions of every benchmark built on it: rows carry ``L``, ``status`` (``ok``, ``skipped``, ``failed``,
``timeout``, ``oom``), ``note``, ``seconds`` (the **median** of the timed repeats; tables and fits use it),
``seconds_min``, ``times`` (all repeats), ``peak_mem_mb`` (MiB, 2**20 bytes, extra over the state before the
measured work) and ``process_peak_rss_mb`` (the child's whole-life peak resident size). Targets
(pass/fail thresholds) live in the docs and tests, never in a benchmark.
"""

from __future__ import annotations
