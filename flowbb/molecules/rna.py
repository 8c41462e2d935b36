"""RNA (RNA-FrameFlow): frames from C4' (origin), O4', C3'; eight torsions as (sin, cos) pairs place C2', C1',
the base N, O3', O5', P, OP1, OP2 from ideal nucleotide geometry (:mod:`flowbb.geometry.rna`, 12 atoms).

Losses (as RNA-FrameFlow): the backbone-atom and pairwise-distance losses compare the frame atoms C4', O4', C3'
(at their ideal frame-local positions, so they depend on the frames only), and a torsion loss, the mean squared
difference of the (sin, cos) pairs over the torsions defined in the truth. ``flow.losses.aux_t_threshold`` gates all
three (0.25 in the RNA experiments).

Batches made by :meth:`RNA.clean` hold ``torsions_1 [B, L, 8, 2]`` and ``torsion_mask [B, L, 8]``; the network
gives ``pred_torsions [B, L, 8, 2]`` (unit (sin, cos) pairs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from flowbb.geometry import rna
from flowbb.geometry.rigid import mask_frames
from flowbb.molecules import TRACE_ATOMS
from flowbb.molecules.base import Molecule

Tensor = torch.Tensor

#: the atoms of the backbone-atom and pairwise-distance losses: the frame atoms C4', O4', C3'
LOSS_ATOMS = 3
#: PDB name of the glycosidic base atom "N" per nucleotide (purines N9, pyrimidines N1; unknown 'N': N9)
GLYCOSIDIC_PDB_NAME = {"A": "N9", "G": "N9", "C": "N1", "U": "N1", "N": "N9"}


class RNA(Molecule):
    """The RNA molecule type (see the module docstring)."""

    name = "rna"
    atom_names = rna.ATOM_ORDER
    num_torsions = rna.NUM_TORSIONS
    extra_terms = ("torsion",)
    trace_atom = TRACE_ATOMS["rna"]
    sample_torsions = "torsions"
    default_residue = "N"
    clash_distance = rna.C4_CLASH_DISTANCE
    clash_min_seq_sep = rna.C4_CLASH_MIN_SEQ_SEP

    def clean(self, atoms: Tensor, atom_mask: Tensor, res_mask: Tensor, residue_index: Tensor) -> dict[str, Tensor]:
        """Frames from C4', O4', C3' and the eight torsions (:func:`flowbb.geometry.rna.torsions_from_atoms`).
        Shapes as :meth:`Molecule.clean`, A = 12; adds ``torsions_1 [B, L, 8, 2]``, ``torsion_mask [B, L, 8]``."""
        valid = res_mask.bool()
        present = atom_mask.bool() & valid[..., None]
        rots, trans, _ = rna.frames_from_atoms(atoms, present)
        rots, trans = mask_frames(rots, trans, res_mask)
        torsions, torsion_mask = rna.torsions_from_atoms(atoms, present)
        return {"rots_1": rots, "trans_1": trans, "torsions_1": torsions, "torsion_mask": torsion_mask}

    def true_torsions(self, batch: Mapping[str, Tensor], res_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(``torsions_1 [B, L, 8, 2]``, ``torsion_mask [B, L, 8]`` bool) of the batch."""
        for key in ("torsions_1", "torsion_mask"):
            if key not in batch:
                raise KeyError(f"flow_losses: RNA batch has no '{key}' (keys: {sorted(batch)})")
        return batch["torsions_1"], batch["torsion_mask"].bool() & res_mask.bool()[..., None]

    def pred_torsions(self, model_out: Mapping[str, Tensor], res_mask: Tensor) -> Tensor:
        """``pred_torsions [B, L, 8, 2]``."""
        if "pred_torsions" not in model_out:
            raise KeyError(f"model output has no 'pred_torsions' (keys: {sorted(model_out)})")
        pred = model_out["pred_torsions"]
        if pred.shape != (*res_mask.shape, self.num_torsions, 2):
            raise ValueError(f"model output: pred_torsions {tuple(pred.shape)} is not [B, L, {self.num_torsions}, 2] "
                             f"for res_mask {tuple(res_mask.shape)}: the model needs model.num_torsions="
                             f"{self.num_torsions} for RNA")
        return pred

    def rebuild(self, rots: Tensor, trans: Tensor, torsions: Tensor, res_mask: Tensor | None = None) -> Tensor:
        """The 12 atoms ``[B, L, 12, 3]`` (:func:`flowbb.geometry.rna.atoms_from_frames`)."""
        return rna.atoms_from_frames(rots, trans, torsions, res_mask)

    def pdb_atom_names(self, sequence: str) -> list[tuple[str, ...]]:
        """PDB atom names per nucleotide of ``sequence`` (A, C, G, U or N), :data:`flowbb.geometry.rna.ATOM_ORDER`
        with the base atom named N9 or N1 (for :func:`flowbb.data.structure_io.write.write_backbone_pdb`)."""
        return [tuple(GLYCOSIDIC_PDB_NAME.get(c, "N9") if a == "N" else a for a in self.atom_names) for c in sequence]

    def atoms_from_prediction(self, rots: Tensor, trans: Tensor, torsions: Tensor, res_mask: Tensor) -> Tensor:
        """The 12 atoms ``[..., L, 12, 3]`` from frames and ``torsions [..., L, 8, 2]``."""
        return rna.atoms_from_frames(rots, trans, torsions, res_mask)

    def residue_names(self, length: int, residue_name: str | None = None) -> list[str]:
        """L nucleotide names: one letter (A, C, G, U or N) for all, or a sequence of ``length`` letters
        (None: N)."""
        name = (residue_name or self.default_residue).upper()
        names = list(name) if len(name) == length else [name] * length
        bad = sorted({c for c in names if c not in GLYCOSIDIC_PDB_NAME})
        if bad or len(names) != length:
            raise ValueError(f"RNA residue names: one of A, C, G, U, N, or a sequence of {length} of them; got "
                             f"{residue_name!r}")
        return names

    def write_pdb(self, path: str | Path, atoms: Tensor, residue_name: str | None = None,
                  models: bool = False) -> Path:
        """The 12 rebuilt atoms of every nucleotide (base atom N9 or N1 by residue name; N: N9), chain A."""
        from flowbb.data.structure_io.write import write_backbone_pdb

        names = self.residue_names(atoms.shape[-3], residue_name)
        return write_backbone_pdb(path, atoms, residue_name=names, chain_id="A", models=models,
                                  atom_names=self.pdb_atom_names("".join(names)))

    def sample_metrics(self, atoms: Tensor, res_mask: Tensor) -> list[dict[str, float]]:
        """:func:`flowbb.training.metrics.rna_backbone_metrics` (C4'-C4', clashes, Rg, bonds and angles)."""
        from flowbb.training.metrics import rna_backbone_metrics

        return rna_backbone_metrics(atoms, res_mask)

    def loss_atoms(
        self, rots: Tensor, trans: Tensor, torsions: Tensor, torsion_mask: Tensor, res_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """C4', O4', C3' ``[B, L, 3, 3]`` at their ideal frame positions; mask ``[B, L, 3]`` (valid residues)."""
        atoms = rna.ideal_frame_atoms(rots, trans)[..., :LOSS_ATOMS, :]
        valid = res_mask.bool()
        return atoms, valid[..., None].expand(*valid.shape, LOSS_ATOMS)

    def extra_losses(self, true: tuple[Tensor, Tensor], pred: Tensor, res_mask: Tensor) -> dict[str, Tensor]:
        """``torsion [B]``: mean over the defined torsions of ``|(sin, cos)_true - (sin, cos)_pred|^2``."""
        torsions, mask = true
        m = mask.to(pred.dtype)
        err = ((torsions.to(pred.dtype) - pred) ** 2).sum(-1)  # [B, L, 8]
        return {"torsion": (err * m).sum((-1, -2)) / m.sum((-1, -2)).clamp_min(1.0)}
