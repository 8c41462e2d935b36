"""Structure prediction with ESMFold (``transformers.EsmForProteinFolding``).

* :func:`load_esmfold` loads the real model from a local folder or the Hugging Face cache. It never
  downloads unless ``allow_download=True`` *and* ``HF_HUB_OFFLINE`` is unset; missing weights raise
  :class:`FoldingWeightsNotFound` with instructions.
* :func:`tiny_random_esmfold` builds a tiny randomly initialised ESMFold: the whole pipeline runs in
  seconds on a CPU, and its structures and pLDDTs mean nothing (``meaningless=True`` is carried into the
  evaluation summary).
* :class:`ESMFoldPredictor.fold` sorts sequences by length, batches them under a token budget
  (``batch_size * L_max <= max_tokens_per_batch``), chunks the trunk's axial attention for long chains
  (``trunk.set_chunk_size``) and runs the language-model stem in fp16/bf16 on GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flowbb.data.packing import BatchBudget, pack_batches
from flowbb.errors import UserError
from flowbb.inference.device import resolve_device

DEFAULT_HUB_ID = "facebook/esmfold_v1"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class FoldingWeightsNotFound(UserError, RuntimeError):
    """ESMFold weights are not available locally (and downloading is off or impossible)."""


def weights_missing_message(where: str, reason: str = "") -> str:
    """The one error message users see when ESMFold weights are missing."""
    return (
        f"ESMFold weights not found ({where}){': ' + reason if reason else ''}.\n"
        "How to get them: on a machine with internet run\n"
        f"    huggingface-cli download {DEFAULT_HUB_ID}        (or: hf download {DEFAULT_HUB_ID}; about 8.4 GB)\n"
        "then either copy the Hugging Face cache (~/.cache/huggingface/hub, or $HF_HOME/hub) to this machine, or\n"
        "copy the downloaded folder (config.json + model weights) here and pass folding.model_path=/path/to/esmfold_v1.\n"
        "To let this run download them itself set folding.allow_download=true (ignored when HF_HUB_OFFLINE=1).\n"
        "For a smoke test of the pipeline without weights use folding=tiny_random (its numbers mean nothing)."
    )


def hf_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(k, "").strip().lower() in truthy for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@dataclass
class FoldedStructure:
    """One predicted structure.

    Attributes:
        sequence: the input sequence (length L).
        atoms: ``[L, 4, 3]`` float32 N, CA, C, O (Å) of the final structure-module iteration.
        plddt: ``[L]`` float32 per-residue pLDDT of CA on a 0-100 scale.
        ptm: predicted TM-score.
        pdb_string: full-atom PDB text (ESMFold's writer, pLDDT as B-factor) when requested.
    """

    sequence: str
    atoms: np.ndarray
    plddt: np.ndarray
    ptm: float
    pdb_string: str | None = field(default=None, repr=False)

    @property
    def mean_plddt(self) -> float:
        """Mean pLDDT over residues (0-100)."""
        return float(self.plddt.mean())


def predicted_tm(ptm_logits: torch.Tensor, max_bin: float = 31.0) -> float:
    """pTM of one chain from ESMFold's pairwise aligned-error logits (AlphaFold2 suppl. 1.9.7).

    ``transformers``' own ``ptm`` output takes one maximum over the whole batch and counts padding, so it is
    recomputed here per chain.

    Args:
        ptm_logits: ``[L, L, num_bins]`` logits of one chain (no padding).
    Returns:
        max over alignment residues i of mean over j of E[1 / (1 + (e_ij / d0)^2)].
    """
    n, num_bins = ptm_logits.shape[0], ptm_logits.shape[-1]
    boundaries = torch.linspace(0, max_bin, num_bins - 1, device=ptm_logits.device, dtype=torch.float32)
    step = boundaries[1] - boundaries[0]
    centers = torch.cat([boundaries + step / 2, (boundaries[-1] + 1.5 * step)[None]])
    d0 = 1.24 * (max(n, 19) - 15) ** (1.0 / 3) - 1.8
    probs = torch.softmax(ptm_logits.float(), dim=-1)
    tm_term = (probs * (1.0 / (1.0 + centers**2 / d0**2))).sum(-1)  # [L, L]
    return float(tm_term.mean(-1).max())


class ESMFoldPredictor:
    """Batched ESMFold inference.

    Args:
        model: an ``EsmForProteinFolding`` (any size).
        name: label recorded in outputs (e.g. ``esmfold_v1``, ``tiny_random``).
        meaningless: True for randomly initialised models (the summary flags their numbers).
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"`` | ...
        max_tokens_per_batch: token budget ``batch_size * L_max``.
        max_batch_size: cap on sequences per batch.
        chunk_size: trunk axial-attention chunk size used for long chains (``None``: never chunk).
        chunk_min_length: chunk the trunk when the longest chain in a batch has at least this many residues.
        num_recycles: trunk recycles (``None``: the model's default).
        lm_dtype: dtype of the ESM-2 language-model stem on GPU (``float16`` as in ESMFold, or ``bfloat16``,
            ``float32``); always float32 on CPU.
        trunk_dtype: ``float32`` (default) or ``bfloat16`` (autocast of the folding trunk on GPU).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        name: str = "esmfold",
        meaningless: bool = False,
        device: str | None = "auto",
        max_tokens_per_batch: int = 2048,
        max_batch_size: int | None = 32,
        chunk_size: int | None = 64,
        chunk_min_length: int = 500,
        num_recycles: int | None = None,
        lm_dtype: str = "float16",
        trunk_dtype: str = "float32",
    ) -> None:
        for key, val in (("lm_dtype", lm_dtype), ("trunk_dtype", trunk_dtype)):
            if val not in _DTYPES:
                raise ValueError(f"folding.{key}={val!r}: expected one of {sorted(_DTYPES)}")
        self.device = resolve_device(device, allow_mps=False)
        self.name = name
        self.meaningless = bool(meaningless)
        self.max_tokens_per_batch = int(max_tokens_per_batch)
        self.max_batch_size = max_batch_size
        self.chunk_size = chunk_size
        self.chunk_min_length = int(chunk_min_length)
        self.num_recycles = num_recycles
        self.trunk_dtype = _DTYPES[trunk_dtype] if self.device.type == "cuda" else torch.float32
        model = model.float()
        if self.device.type == "cuda":
            model.esm.to(
                _DTYPES[lm_dtype]
            )  # before moving: the 3B-parameter stem never sits on the GPU in fp32
        self.model = model.to(self.device).eval()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.trunk_dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.trunk_dtype)
        return contextlib.nullcontext()

    @torch.no_grad()
    def _fold_batch(self, seqs: list[str], with_pdb: bool) -> list[FoldedStructure]:
        l_max = max(len(s) for s in seqs)
        chunk = self.chunk_size if (self.chunk_size and l_max >= self.chunk_min_length) else None
        self.model.trunk.set_chunk_size(chunk)
        with self._autocast():
            out = self.model.infer(seqs) if self.num_recycles is None else self._infer_recycles(seqs)
        pos = out["positions"][-1].float().cpu().numpy()  # [B, L, 14, 3]
        plddt = out["plddt"][..., 1].float().cpu().numpy() * 100.0  # [B, L] (CA, 0-100)
        ptm = [predicted_tm(out["ptm_logits"][b, : len(s), : len(s)]) for b, s in enumerate(seqs)]
        pdbs = (
            self.model.output_to_pdb(
                {
                    k: v.float() if v.is_floating_point() else v
                    for k, v in out.items()
                    if isinstance(v, torch.Tensor)
                }
            )
            if with_pdb
            else [None] * len(seqs)
        )
        return [
            FoldedStructure(
                s,
                pos[b, : len(s), :4].astype(np.float32),
                plddt[b, : len(s)].astype(np.float32),
                float(ptm[b]),
                pdbs[b],
            )
            for b, s in enumerate(seqs)
        ]

    def _infer_recycles(self, seqs: list[str]) -> dict:
        # ``infer`` has no recycle argument: build its inputs the same way and call forward.
        from transformers.models.esm.openfold_utils import residue_constants

        dev = self.device
        L = max(len(s) for s in seqs)
        aatype = torch.zeros(len(seqs), L, dtype=torch.long, device=dev)
        mask = torch.zeros(len(seqs), L, dtype=torch.long, device=dev)
        for b, s in enumerate(seqs):
            idx = [residue_constants.restype_order_with_x.get(a, residue_constants.restype_num) for a in s]
            aatype[b, : len(s)] = torch.tensor(idx, device=dev)
            mask[b, : len(s)] = 1
        pos_ids = torch.arange(L, device=dev).expand(len(seqs), -1)
        return self.model(aatype, mask, position_ids=pos_ids, num_recycles=self.num_recycles)

    def _fold_with_retry(self, seqs: list[str], with_pdb: bool) -> list[FoldedStructure]:
        try:
            return self._fold_batch(seqs, with_pdb)
        except torch.cuda.OutOfMemoryError:
            if self.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            if len(seqs) > 1:
                half = len(seqs) // 2
                return self._fold_with_retry(seqs[:half], with_pdb) + self._fold_with_retry(
                    seqs[half:], with_pdb
                )
            if self.chunk_size and self.chunk_min_length > 0:
                # a single long chain: chunk the trunk from now on, then retry once
                self.chunk_min_length = 0
                return self._fold_batch(seqs, with_pdb)
            raise

    def fold(
        self,
        sequences: list[str],
        with_pdb: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[FoldedStructure]:
        """Predict structures.

        Args:
            sequences: N one-letter sequences (any lengths; unknown letters fold as ``X``).
            with_pdb: also return full-atom PDB text per structure.
            on_batch: called with the number of sequences after each batch (progress bars).
        Returns:
            N :class:`FoldedStructure`, in input order.
        """
        bad = [i for i, s in enumerate(sequences) if not s]
        if bad:
            raise ValueError(f"fold: empty sequence at positions {bad}")
        seqs = [s.upper() for s in sequences]
        results: list[FoldedStructure | None] = [None] * len(seqs)
        budget = BatchBudget(max_tokens=self.max_tokens_per_batch, max_batch_size=self.max_batch_size)
        for batch in pack_batches([len(s) for s in seqs], budget):
            folded = self._fold_with_retry([seqs[i] for i in batch], with_pdb)
            for i, f in zip(batch, folded):
                results[i] = f
            if on_batch is not None:
                on_batch(len(batch))
        return results  # type: ignore[return-value]


def load_esmfold(
    model_path: str | None = None,
    hub_id: str = DEFAULT_HUB_ID,
    allow_download: bool = False,
    **predictor_kwargs,
) -> ESMFoldPredictor:
    """Load the real ESMFold.

    Args:
        model_path: local folder holding ``config.json`` and the weights (takes precedence).
        hub_id: Hugging Face id looked up in the local cache when ``model_path`` is ``None``.
        allow_download: let ``from_pretrained`` download when the cache lacks the weights; ignored when
            ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set.
        **predictor_kwargs: :class:`ESMFoldPredictor` settings.
    Raises:
        FoldingWeightsNotFound: weights not available locally (with instructions).
    """
    from transformers import EsmForProteinFolding

    if model_path:
        path = Path(model_path).expanduser()
        where = f"folding.model_path={path}"
        if not path.is_dir():
            raise FoldingWeightsNotFound(weights_missing_message(where, "no such folder"))
        if not (path / "config.json").is_file():
            raise FoldingWeightsNotFound(weights_missing_message(where, "the folder has no config.json"))
        source, local_only = str(path), True
    else:
        local_only = hf_offline() or not allow_download
        source = hub_id
        where = f"'{hub_id}' in the Hugging Face cache" + ("" if local_only else " or online")
    try:
        model = EsmForProteinFolding.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise FoldingWeightsNotFound(weights_missing_message(where, type(err).__name__)) from err
    name = Path(source).name if model_path else hub_id.split("/")[-1]
    return ESMFoldPredictor(model, name=name, meaningless=False, **predictor_kwargs)


def tiny_esmfold_config(
    hidden_size: int = 32,
    num_layers: int = 2,
    trunk_blocks: int = 1,
    sequence_state_dim: int = 32,
    pairwise_state_dim: int = 16,
    structure_blocks: int = 2,
    max_recycles: int = 1,
):
    """A tiny ``EsmConfig`` for ESMFold (ESM-2 vocabulary; small stem, trunk and structure module)."""
    from transformers import EsmConfig
    from transformers.models.esm.configuration_esm import get_default_vocab_list

    vocab = list(get_default_vocab_list())
    return EsmConfig(
        vocab_size=len(vocab),
        vocab_list=vocab,
        pad_token_id=vocab.index("<pad>"),
        mask_token_id=vocab.index("<mask>"),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=4098,
        position_embedding_type="rotary",
        token_dropout=True,
        emb_layer_norm_before=False,
        is_folding_model=True,
        esmfold_config={
            "fp16_esm": False,
            "lddt_head_hid_dim": 16,
            "trunk": {
                "num_blocks": trunk_blocks,
                "sequence_state_dim": sequence_state_dim,
                "pairwise_state_dim": pairwise_state_dim,
                "sequence_head_width": sequence_state_dim // 2,
                "pairwise_head_width": pairwise_state_dim // 2,
                "position_bins": 32,
                "max_recycles": max_recycles,
                "chunk_size": None,
                "structure_module": {
                    "sequence_dim": 32,
                    "pairwise_dim": 16,
                    "ipa_dim": 8,
                    "resnet_dim": 16,
                    "num_heads_ipa": 2,
                    "num_qk_points": 2,
                    "num_v_points": 2,
                    "num_blocks": structure_blocks,
                },
            },
        },
    )


def tiny_random_esmfold(seed: int = 0, config: dict | None = None, **predictor_kwargs) -> ESMFoldPredictor:
    """A tiny randomly initialised ESMFold for smoke tests: fast on CPU, its outputs mean nothing.

    Args:
        seed: initialisation seed (the same seed gives the same model).
        config: overrides for :func:`tiny_esmfold_config`.
        **predictor_kwargs: :class:`ESMFoldPredictor` settings.
    """
    from transformers import EsmForProteinFolding

    cfg = tiny_esmfold_config(**(config or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = EsmForProteinFolding(cfg)
    predictor_kwargs.setdefault("lm_dtype", "float32")
    return ESMFoldPredictor(model, name="tiny_random", meaningless=True, **predictor_kwargs)
