"""Benchmark points in fresh processes, and sweeps over them (parent side; no torch, no Lightning).

A **point** is one measurement: a module-level function (in a ``flowbb`` module or in a script file) called with
JSON-able keyword arguments in a fresh Python process (:mod:`flowbb.bench.child`), so that imports, allocator
caches, compiled kernels and peak-memory marks of one point never leak into the next (nor the parent's: a point's
memory is read from its own process). The function returns a dict
(usually :func:`flowbb.bench.measure.measure`'s); the parent adds the child's whole-life peak resident size and the
wall time. A point that raises, is killed (SIGKILL: the out-of-memory killer) or runs past its timeout raises
:class:`PointError`, which names the point and says which of the three happened.

:func:`run_points` runs a list of points with a progress bar, one printed line per point, optional skips (e.g. a
quadratic path predicted past a memory cap) and a callback after every point (to save partial results), and turns
failures into rows with a ``status`` and a ``note`` instead of stopping the sweep.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flowbb

#: row statuses: ``ok`` measured; ``skipped`` not run (see note); the failure kinds of :class:`PointError`
STATUSES = ("ok", "skipped", "failed", "timeout", "oom")
_FLOWBB_ROOT = str(Path(flowbb.__file__).resolve().parents[1])
_STDERR_TAIL = 5


class PointError(RuntimeError):
    """A benchmark point that did not return a result.

    Attributes:
        point: the point's name (e.g. ``"impl=flash L=4096 mode=fwd_bwd"``).
        kind: ``"failed"`` (the function raised, or the process died), ``"oom"`` (out of memory: a
            ``MemoryError`` / ``torch.OutOfMemoryError`` in the child, or the child killed by SIGKILL) or
            ``"timeout"``.
        returncode: the child's exit status (negative: killed by that signal; ``None`` on timeout).
        traceback: the child's traceback when the function raised ("" otherwise).
    """

    def __init__(self, point: str, kind: str, detail: str, returncode: int | None = None) -> None:
        super().__init__(f"benchmark point {point!r}: {kind}: {detail}")
        self.point, self.kind, self.detail, self.returncode = point, kind, detail, returncode
        self.traceback = ""


@dataclasses.dataclass(frozen=True)
class Point:
    """One measurement of a sweep.

    Attributes:
        labels: what identifies the point in the results (e.g. ``{"impl": "flash", "L": 1024, "mode": "fwd"}``);
            copied into its row. ``L`` (the chain length) is the x axis of fits and plots.
        target: the function (module-level) or its ``module:function`` / ``file.py:function`` name.
        args: its keyword arguments (JSON-able).
    """

    labels: Mapping[str, Any]
    target: Callable[..., dict] | str
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """``key=value`` pairs of the labels, e.g. ``"impl=flash L=1024 mode=fwd"``."""
        return " ".join(f"{k}={v}" for k, v in self.labels.items())


def target_name(target: Callable[..., Any] | str) -> str:
    """``module:function`` for a function of the ``flowbb`` package, ``/abs/file.py:function`` for any other
    (scripts, tests: the child loads the file), the string itself when given one."""
    if isinstance(target, str):
        return target
    qualname = target.__qualname__
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(f"benchmark target {qualname} must be a module-level function")
    module = target.__module__
    if module == "flowbb" or module.startswith("flowbb."):
        return f"{module}:{qualname}"
    return f"{Path(inspect.getfile(target)).resolve()}:{qualname}"


def child_env(threads: int | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a point's process: this one's plus ``env``, flowbb importable, unbuffered output, and
    ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set to ``threads`` when it is positive."""
    out = dict(os.environ)
    out.update(env or {})
    path = out.get("PYTHONPATH", "")
    out["PYTHONPATH"] = _FLOWBB_ROOT + (os.pathsep + path if path else "")
    out["PYTHONUNBUFFERED"] = "1"
    if threads and threads > 0:
        out["OMP_NUM_THREADS"] = out["MKL_NUM_THREADS"] = str(threads)
    return out


def _tail(text: str, n: int = _STDERR_TAIL) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def run_point(target: Callable[..., dict] | str, args: Mapping[str, Any] | None = None, *, name: str | None = None,
              timeout: float | None = None, threads: int | None = None, env: Mapping[str, str] | None = None,
              cwd: str | Path | None = None) -> dict[str, Any]:
    """Run ``target(**args)`` in a fresh Python process and return its dict, plus ``process_peak_rss_mb`` (the
    child's whole-life peak resident size, MiB) and ``wall_s`` (seconds, process start to exit).

    Args:
        target: a module-level function, or its name (see :func:`target_name`).
        args: keyword arguments, JSON-able.
        name: how errors name the point (default: the target).
        timeout: seconds before the child is killed (``None``: no limit).
        threads: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` of the child (``None`` or 0: inherited).
        env: extra environment variables.
        cwd: the child's working directory (default: this one's).

    Raises:
        PointError: the function raised, the process died or was killed, or the timeout passed.
    """
    tname = target_name(target)
    name = name or tname
    fd, result_file = tempfile.mkstemp(prefix="flowbb_bench_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "flowbb.bench.child", tname, result_file]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, input=json.dumps(dict(args or {})), capture_output=True, text=True,
                              timeout=timeout, env=child_env(threads, env), cwd=cwd, check=False)
        wall = time.perf_counter() - t0
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        tail = _tail(stderr)
        raise PointError(name, "timeout", f"no result after {timeout:g} s (killed)" + (f"; {tail}" if tail else "")
                         ) from None
    finally:
        result = Path(result_file)
        text = result.read_text() if result.exists() else ""
        result.unlink(missing_ok=True)
    out = json.loads(text) if text.strip() else {}
    if proc.returncode == 0 and "result" in out:
        row = dict(out["result"])
        row.update(process_peak_rss_mb=out.get("process_peak_rss_mb"), wall_s=wall)
        return row
    if "error" in out:
        err, msg = out["error"], out.get("message", "")
        oom = err in ("MemoryError", "OutOfMemoryError") or "out of memory" in msg.lower()
        exc = PointError(name, "oom" if oom else "failed", f"{err}: {msg[:500]}", proc.returncode)
        exc.traceback = out.get("traceback", "")
        raise exc
    if proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
        raise PointError(name, "oom", "killed by SIGKILL (most likely the out-of-memory killer); "
                         + _tail(proc.stderr), proc.returncode)
    raise PointError(name, "failed", f"exit {proc.returncode} without a result: {_tail(proc.stderr or proc.stdout)}",
                     proc.returncode)


def _line(name: str, row: Mapping[str, Any]) -> str:
    """One printed line per point: median and minimum seconds, peak memory, wall time."""
    if row.get("status") != "ok":
        return f"{name}: {row.get('status')}: {row.get('note', '')}"
    parts = [name + ":"]
    if row.get("seconds") is not None:
        parts.append(f"{row['seconds']:.4g} s")
        if row.get("times") and len(row["times"]) > 1:
            parts.append(f"(median of {len(row['times'])}, min {row['seconds_min']:.4g} s)")
    if row.get("peak_mem_mb") is not None:
        parts.append(f"peak {row['peak_mem_mb']:.1f} MB")
    parts.append(f"[{row.get('wall_s', 0):.0f} s wall]")
    return " ".join(parts)


def run_points(points: Sequence[Point], *, timeout: float | None = None, threads: int | None = None,
               env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
               skip: Callable[[Point, list[dict]], str | None] | None = None,
               after: Callable[[list[dict]], None] | None = None, progress: bool = True,
               title: str = "bench") -> list[dict[str, Any]]:
    """Run ``points`` in order, each in a fresh process (:func:`run_point`), and return one row per point.

    Row of a measured point: ``{**labels, "status": "ok", "note": "", **result, "process_peak_rss_mb", "wall_s"}``;
    of a skipped or failed one: ``{**labels, "status": "skipped" | "failed" | "timeout" | "oom", "note": why,
    "seconds": None, "peak_mem_mb": None}``.

    Args:
        points: the sweep, in the order to run.
        timeout, threads, env, cwd: as for :func:`run_point`, for every point.
        skip: ``skip(point, rows so far)`` -> a reason to skip it, or ``None`` to run it.
        after: called with the rows so far after every point (e.g. to save partial results).
        progress: show a progress bar (rich) and print one line per point.
        title: the progress bar's label.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    rows: list[dict[str, Any]] = []
    console = Console(stderr=True, quiet=not progress)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress, transient=True) as bar:
        task = bar.add_task(title, total=len(points))
        for point in points:
            bar.update(task, description=f"{title}: {point.name}")
            row: dict[str, Any] = {**point.labels, "status": "ok", "note": ""}
            reason = skip(point, rows) if skip is not None else None
            if reason is not None:
                row.update(status="skipped", note=reason, seconds=None, peak_mem_mb=None)
            else:
                try:
                    row.update(run_point(point.target, point.args, name=point.name, timeout=timeout,
                                         threads=threads, env=env, cwd=cwd))
                except PointError as exc:
                    row.update(status=exc.kind, note=f"{exc.kind}: {exc.detail}", seconds=None, peak_mem_mb=None)
            rows.append(row)
            console.print(_line(point.name, row), markup=False, highlight=False, soft_wrap=True)
            if after is not None:
                after(rows)
            bar.advance(task)
    return rows
