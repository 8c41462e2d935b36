"""Process memory readings for the benchmark scripts (Linux ``/proc``; no torch, no other flowbb imports).

The CPU peak of a piece of work is ``rss_bytes("VmHWM") - base`` where ``base = rss_bytes("VmRSS")`` is read
and the high-water mark reset (:func:`reset_peak_rss`) just before the work starts.
"""

from __future__ import annotations


def rss_bytes(field: str) -> int:
    """A memory field of ``/proc/self/status`` in bytes (``VmRSS``: resident now; ``VmHWM``: peak resident)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident size (``/proc/self/clear_refs``); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
