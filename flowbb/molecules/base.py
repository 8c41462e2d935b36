"""The molecule-type interface: what differs between proteins and RNA, in one class per type.

A :class:`Molecule` says, for its type, how clean frames and torsions come from the stored atoms
(:meth:`Molecule.clean`), which torsions the network's torsion head predicts (:attr:`Molecule.num_torsions`
(sin, cos) pairs, read back by :meth:`Molecule.pred_torsions`), how atoms are rebuilt from frames + torsions
(:meth:`Molecule.rebuild`), which atoms the backbone-atom and pairwise-distance losses compare
(:meth:`Molecule.loss_atoms`) and which further auxiliary loss terms apply (:meth:`Molecule.extra_losses`).
The flow, the trunk, batching, training and sampling call these methods and never branch on the type.

Shapes: ``B`` chains, ``L`` residues, ``A`` stored atoms per residue, ``T`` torsions, ``K`` loss atoms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch

Tensor = torch.Tensor


class Molecule(ABC):
    """One molecule type (stateless; the instances live in :data:`flowbb.molecules.MOLECULES`).

    Attributes:
        name: 'protein' or 'rna' (the ``molecule`` column of a processed store).
        atom_names: the A atoms stored per residue (:data:`flowbb.data.store.LAYOUTS`), frame atoms first.
        num_torsions: T, the (sin, cos) pairs of the torsion head (``model.num_torsions``).
        extra_terms: names of the loss terms :meth:`extra_losses` adds to the flow losses.
        trace_atom: index in :attr:`atom_names` of the one atom per residue of traces (CA, C4'): TM-align,
            diversity, novelty (:data:`flowbb.molecules.TRACE_ATOMS`).
        sample_torsions: the key under which the sampler returns the torsions of :meth:`pred_torsions`
            (``psi`` ``[B, L]`` for proteins, ``torsions`` ``[B, L, T, 2]`` for RNA).
        default_residue: residue name written to PDB files of samples when none is chosen.
        clash_distance: Å; trace atoms (CA, C4') of residues at least ``clash_min_seq_sep`` apart in sequence
            closer than this clash (the ``clash`` flow loss, :mod:`flowbb.flow.losses`).
        clash_min_seq_sep: pairs closer in sequence never clash.
    """

    name: str
    atom_names: tuple[str, ...]
    num_torsions: int
    extra_terms: tuple[str, ...] = ()
    trace_atom: int
    sample_torsions: str
    default_residue: str
    clash_distance: float
    clash_min_seq_sep: int

    @property
    def num_atoms(self) -> int:
        """A, the atoms stored per residue."""
        return len(self.atom_names)

    @abstractmethod
    def clean(self, atoms: Tensor, atom_mask: Tensor, res_mask: Tensor, residue_index: Tensor) -> dict[str, Tensor]:
        """Clean frames and torsions of a batch.

        Args:
            atoms: ``[B, L, A, 3]`` (Å); atom_mask: ``[B, L, A]``; res_mask: ``[B, L]``; residue_index: ``[B, L]``.
        Returns:
            ``rots_1 [B, L, 3, 3]``, ``trans_1 [B, L, 3]`` (Å; padding: identity / zero) and the true torsions
            under the keys :meth:`true_torsions` reads.
        """

    @abstractmethod
    def true_torsions(self, batch: Mapping[str, Tensor], res_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(torsions, torsion mask) of the truth from a batch made by :meth:`clean`, in the form
        :meth:`loss_atoms` takes."""

    @abstractmethod
    def pred_torsions(self, model_out: Mapping[str, Tensor], res_mask: Tensor) -> Tensor:
        """The predicted torsions from the network's output, in the form :meth:`loss_atoms` takes
        (checked against ``res_mask [B, L]``)."""

    @abstractmethod
    def rebuild(self, rots: Tensor, trans: Tensor, torsions: Tensor, res_mask: Tensor | None = None) -> Tensor:
        """All atoms of the type from frames and torsions.

        Args:
            rots ``[B, L, 3, 3]``, trans ``[B, L, 3]`` (Å), torsions ``[B, L, T, 2]`` (sin, cos), res_mask ``[B, L]``.
        Returns:
            ``[B, L, A, 3]`` in :attr:`atom_names` order; masked residues are zeros.
        """

    @abstractmethod
    def loss_atoms(
        self, rots: Tensor, trans: Tensor, torsions: Tensor, torsion_mask: Tensor, res_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Atoms of the backbone-atom and pairwise-distance losses.

        Args:
            rots ``[B, L, 3, 3]``, trans ``[B, L, 3]``; torsions / torsion_mask as :meth:`true_torsions` gives;
            res_mask ``[B, L]``.
        Returns:
            atoms ``[B, L, K, 3]`` (Å), mask ``[B, L, K]`` bool.
        """

    @abstractmethod
    def atoms_from_prediction(self, rots: Tensor, trans: Tensor, torsions: Tensor, res_mask: Tensor) -> Tensor:
        """All atoms from frames and torsions in the form :meth:`pred_torsions` gives (what the sampler rebuilds).

        Args:
            rots ``[..., L, 3, 3]``, trans ``[..., L, 3]`` (Å), torsions as :meth:`pred_torsions` (any leading
            dims), res_mask ``[..., L]``.
        Returns:
            ``[..., L, A, 3]`` in :attr:`atom_names` order; masked residues are zeros.
        """

    @abstractmethod
    def write_pdb(self, path: str | Path, atoms: Tensor, residue_name: str | None = None,
                  models: bool = False) -> Path:
        """Write one sample (``atoms [L, A, 3]``) or a trajectory (``[M, L, A, 3]``, ``models=True``) as a PDB file,
        chain A, residues 1..L named ``residue_name`` (one name for all, or for RNA a sequence of L letters;
        None: :attr:`default_residue`). Returns the path."""

    @abstractmethod
    def sample_metrics(self, atoms: Tensor, res_mask: Tensor) -> list[dict[str, float]]:
        """Geometry of sampled chains ``atoms [B, L, A, 3]`` with ``res_mask [B, L]``: one dict per chain
        (:mod:`flowbb.training.metrics`)."""

    def extra_losses(
        self, true: tuple[Tensor, Tensor], pred: Tensor, res_mask: Tensor
    ) -> dict[str, Tensor]:
        """Auxiliary loss terms beyond the backbone-atom and pair-distance ones, per sample ``[B]`` (unweighted,
        before the t threshold). Args: ``true`` = :meth:`true_torsions`, ``pred`` = :meth:`pred_torsions`."""
        return {}
