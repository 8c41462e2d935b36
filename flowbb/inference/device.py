"""The one device resolver of flowbb: ``"auto"`` -> the best accelerator present, anything else checked.

Used by checkpoint loading (:func:`flowbb.inference.checkpoint.load_checkpoint`), the sampler CLI and the evaluation
models (ProteinMPNN, ESMFold, with ``allow_mps=False``).
"""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = "auto", allow_mps: bool = True) -> torch.device:
    """The ``torch.device`` to run on.

    Args:
        device: ``"auto"``/``None`` -> ``cuda`` when available, else ``mps`` when available (and ``allow_mps``),
            else ``cpu``; anything else is passed to ``torch.device``.
        allow_mps: let ``"auto"`` pick Apple's MPS backend (the evaluation models pass ``False``: they run on CUDA
            or the CPU, as they always have).
    Returns:
        the device.
    Raises:
        ValueError: a CUDA device is asked for on a machine without CUDA.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if allow_mps and mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine (use device=auto or cpu)")
    return dev
