"""flowbb.inference: checkpoint loading and batched generation into PDB files, without Lightning.

- :mod:`flowbb.inference.checkpoint`: the checkpoint format (``EMA_KEY``, ``MODEL_PREFIX``), :func:`build_model`
  (also the training module's builder), safe loading (:func:`load_checkpoint`, :func:`read_checkpoint`).
- :mod:`flowbb.inference.device`: :func:`resolve_device`, the one ``"auto"`` device rule.
- :mod:`flowbb.inference.generate`: per-sample seeds, token-budget batches, :func:`generate` (lengths -> PDB files +
  ``samples.csv``), used by the sampler CLI, the notebook, the benchmarks and the validation callback.
- :mod:`flowbb.inference.cost`: the sampler CLI's cost estimate, length limit and per-step progress.

Importing this package never imports ``lightning`` (a test checks it in a fresh interpreter), so sampling starts fast.
"""

from __future__ import annotations

from flowbb.inference.checkpoint import (
    EMA_KEY,
    EMA_UPDATES_KEY,
    MODEL_PREFIX,
    FlowbbCheckpointError,
    LoadedCheckpoint,
    build_model,
    load_checkpoint,
    read_checkpoint,
)
from flowbb.inference.device import resolve_device
from flowbb.inference.generate import (
    CSV_COLUMNS,
    CSV_NAME,
    GeneratedSample,
    SamplingSettings,
    generate,
    generate_from_checkpoint,
    sample_batch,
    sample_seed,
)

__all__ = [
    "CSV_COLUMNS", "CSV_NAME", "EMA_KEY", "EMA_UPDATES_KEY", "MODEL_PREFIX", "FlowbbCheckpointError", "GeneratedSample",
    "LoadedCheckpoint", "SamplingSettings", "build_model", "generate", "generate_from_checkpoint", "load_checkpoint",
    "read_checkpoint", "resolve_device", "sample_batch", "sample_seed",
]
