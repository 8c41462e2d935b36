"""The fresh process of one benchmark point: ``python -m flowbb.bench.child TARGET RESULT_FILE`` (keyword arguments
as a JSON object on stdin).

``TARGET`` is ``package.module:function`` or ``/path/to/file.py:function`` (a script, loaded from its file under a
private module name). The function is called with the keyword arguments and must return a JSON-able dict. The
child writes ``{"result": ..., "process_peak_rss_mb": ..., "seconds": ...}`` (:func:`process_peak_rss_mb`) to
``RESULT_FILE`` and exits 0, or ``{"error": type name, "message": ..., "traceback": ...}`` and exits 1. Only the
standard library is imported before the target, so a point pays for exactly the imports it needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def resolve(target: str) -> Callable[..., Any]:
    """The function named by ``module:function`` or ``file.py:function``."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise ValueError(f"benchmark target {target!r} is not 'module:function' or 'file.py:function'")
    if where.endswith(".py"):
        path = Path(where)
        spec = importlib.util.spec_from_file_location(f"_flowbb_bench_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    fn = module
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn  # type: ignore[return-value]


def process_peak_rss_mb() -> float:
    """This process's peak resident set size over its whole life, in MiB: ``VmHWM`` of ``/proc/self/status``, or
    the highest value it had before :mod:`flowbb.bench.measure` reset it. (``ru_maxrss`` is not used where
    ``/proc`` exists: it keeps the parent's resident size from before ``exec``, so a point started by a large
    process would report that process's size.)"""
    measure = sys.modules.get("flowbb.bench.measure")
    before_resets = getattr(measure, "PEAK_BEFORE_RESETS", 0) if measure is not None else 0
    try:
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(hwm, before_resets) / 2**20


def main(argv: list[str] | None = None) -> int:
    """Run one point; see the module docstring."""
    target, result_file = (argv if argv is not None else sys.argv[1:])[:2]
    t0 = time.perf_counter()
    try:
        kwargs = json.loads(sys.stdin.read() or "{}")
        result = resolve(target)(**kwargs)
        if not isinstance(result, dict):
            raise TypeError(f"{target} returned {type(result).__name__}, not a dict")
        out: dict[str, Any] = {"result": result}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises PointError
        out = {"error": type(exc).__name__, "message": str(exc)[:4000],
               "traceback": "".join(traceback.format_exception(exc))[-4000:]}
        code = 1
    out.update(process_peak_rss_mb=process_peak_rss_mb(), seconds=time.perf_counter() - t0)
    Path(result_file).write_text(json.dumps(out, default=_jsonable))
    return code


def _jsonable(obj: Any) -> Any:
    """NumPy / torch scalars as Python numbers, anything else as its string."""
    return obj.item() if hasattr(obj, "item") else str(obj)


if __name__ == "__main__":
    sys.exit(main())
