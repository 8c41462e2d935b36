"""Proteins: frames from N, CA, C (origin CA); one torsion, psi, places the carbonyl O; backbone N, CA, C, O
rebuilt from frames + psi (:mod:`flowbb.geometry.backbone`); the backbone-atom and pairwise-distance losses
compare N, CA, C, O (O only where psi is defined); no further auxiliary loss.

Batches made by :meth:`Protein.clean` hold ``psi_1 [B, L]`` (radians) and ``psi_mask [B, L]``; the network's
``pred_psi [B, L]`` is the angle of its single (sin, cos) torsion pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from flowbb.geometry.backbone import ATOM_ORDER, backbone_from_frames, psi_from_backbone
from flowbb.geometry.rigid import frames_from_backbone, mask_frames
from flowbb.molecules import TRACE_ATOMS
from flowbb.molecules.base import Molecule

Tensor = torch.Tensor


class Protein(Molecule):
    """The protein molecule type (see the module docstring)."""

    name = "protein"
    atom_names = ATOM_ORDER
    num_torsions = 1
    trace_atom = TRACE_ATOMS["protein"]
    sample_torsions = "psi"
    default_residue = "GLY"
    #: 300 chains of the shared set: no CA pair at |i - j| >= 3 closer than 3.5 Å, 2e-5 of them closer than 3.8 Å
    #: (the sample metric counts pairs under 3.0 Å, :func:`flowbb.geometry.checks.count_clashes`)
    clash_distance = 3.8
    clash_min_seq_sep = 3

    def clean(self, atoms: Tensor, atom_mask: Tensor, res_mask: Tensor, residue_index: Tensor) -> dict[str, Tensor]:
        """Frames by Gram-Schmidt on (C - CA, N - CA), translation CA; ``psi_1``, ``psi_mask`` from
        :func:`~flowbb.geometry.backbone.psi_from_backbone`. Shapes as :meth:`Molecule.clean`, A = 4."""
        rots, trans = mask_frames(*frames_from_backbone(atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :]), res_mask)
        psi, psi_mask = psi_from_backbone(atoms, res_mask, residue_index)
        return {"rots_1": rots, "trans_1": trans, "psi_1": psi, "psi_mask": psi_mask}

    def true_torsions(self, batch: Mapping[str, Tensor], res_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(psi ``[B, L]``, psi_mask ``[B, L]`` bool): ``psi_1``/``psi_mask`` of the batch, else from ``atoms``."""
        if "psi_1" in batch:
            if "psi_mask" not in batch:
                raise KeyError(f"flow_losses: batch has no 'psi_mask' (keys: {sorted(batch)})")
            return batch["psi_1"], batch["psi_mask"].bool() & res_mask.bool()
        if "atoms" not in batch:
            raise KeyError("flow_losses: batch needs 'psi_1' and 'psi_mask', or 'atoms' to compute them")
        return psi_from_backbone(batch["atoms"], res_mask, batch.get("residue_index"))

    def pred_torsions(self, model_out: Mapping[str, Tensor], res_mask: Tensor) -> Tensor:
        """``pred_psi [B, L]`` (radians)."""
        if "pred_psi" not in model_out:
            raise KeyError(f"model output has no 'pred_psi' (keys: {sorted(model_out)})")
        psi = model_out["pred_psi"]
        if psi.shape != res_mask.shape:
            raise ValueError(f"model output: pred_psi {tuple(psi.shape)} does not match res_mask {tuple(res_mask.shape)}")
        return psi

    def rebuild(self, rots: Tensor, trans: Tensor, torsions: Tensor, res_mask: Tensor | None = None) -> Tensor:
        """N, CA, C, O ``[B, L, 4, 3]`` from frames and the psi (sin, cos) pair ``torsions [B, L, 1, 2]``."""
        psi = torch.atan2(torsions[..., 0, 0], torsions[..., 0, 1])
        return backbone_from_frames(rots, trans, psi, res_mask)

    def loss_atoms(
        self, rots: Tensor, trans: Tensor, torsions: Tensor, torsion_mask: Tensor, res_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """N, CA, C, O ``[B, L, 4, 3]`` from frames + psi ``[B, L]``; mask ``[B, L, 4]`` (O where psi is defined)."""
        atoms = backbone_from_frames(rots, trans, torsions)
        valid = res_mask.bool()
        mask = torch.cat([valid[..., None].expand(*valid.shape, 3), torsion_mask.bool()[..., None]], dim=-1)
        return atoms, mask & valid[..., None]

    def atoms_from_prediction(self, rots: Tensor, trans: Tensor, torsions: Tensor, res_mask: Tensor) -> Tensor:
        """N, CA, C, O ``[..., L, 4, 3]`` from frames and psi ``[..., L]`` (radians)."""
        return backbone_from_frames(rots, trans, torsions, res_mask=res_mask)

    def write_pdb(self, path: str | Path, atoms: Tensor, residue_name: str | None = None,
                  models: bool = False) -> Path:
        """N, CA, C, O of every residue (poly-GLY unless ``residue_name``), chain A."""
        from flowbb.data.structure_io.write import write_backbone_pdb

        return write_backbone_pdb(path, atoms, residue_name=residue_name or self.default_residue, chain_id="A",
                                  models=models)

    def sample_metrics(self, atoms: Tensor, res_mask: Tensor) -> list[dict[str, float]]:
        """:func:`flowbb.training.metrics.backbone_metrics` (CA-CA, clashes, Rg, DSSP fractions)."""
        from flowbb.training.metrics import backbone_metrics

        return backbone_metrics(atoms, res_mask)
