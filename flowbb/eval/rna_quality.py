"""RNA structure quality by lociPARSE, when it is installed (``pip install --no-deps lociparse``).

lociPARSE (Tarafder & Bhattacharya, 2024; PyPI ``lociparse``, weights shipped in the wheel, runs offline) is a
locality-aware IPA that predicts, from the P, C4' and glycosidic N atoms (N9 of purines, N1 of pyrimidines) and the
sequence, each nucleotide's lDDT (pNuL) and their mean, pMoL (0-1; higher is more native-like). It reads a PDB file.

flowbb's samples have no sequence: :meth:`LociParseScorer.score_atoms` writes a backbone with one chosen sequence
(e.g. poly-A, so that every base atom is an N9 that lociPARSE finds) and scores it. Score natural chains the same way
(same sequence) for a like-for-like reference, and with their own sequence for the model's best case.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import tempfile
from pathlib import Path

import numpy as np

from flowbb.data.structure_io.write import write_backbone_pdb
from flowbb.geometry import rna


def lociparse_available() -> bool:
    """True when the ``lociPARSE`` package can be imported."""
    return importlib.util.find_spec("lociPARSE") is not None


class LociParseScorer:
    """pMoL of RNA backbones (lociPARSE's predicted mean nucleotide lDDT, 0-1).

    Raises:
        ModuleNotFoundError: lociPARSE is not installed (the message says how to install it).
    """

    def __init__(self) -> None:
        if not lociparse_available():
            raise ModuleNotFoundError(
                "lociPARSE is not installed: pip install --no-deps lociparse (its pins of old numpy/torch are not "
                "needed; it runs with flowbb's)"
            )
        from lociPARSE import lociparse

        self._model = lociparse()

    def score_file(self, path: str | Path) -> float:
        """pMoL of the first chain of a PDB file (ATOM records with P, C4' and N9/N1)."""
        with contextlib.redirect_stdout(io.StringIO()):
            return float(self._model.score(str(path)).pMoL.value)

    def score_atoms(self, atoms: np.ndarray, sequence: str, atom_mask: np.ndarray | None = None) -> float:
        """pMoL of one RNA backbone.

        Args:
            atoms: ``[L, 12, 3]`` in :data:`flowbb.geometry.rna.ATOM_ORDER` (Å).
            sequence: L letters of A, C, G, U (decides N9 / N1 and lociPARSE's sequence features).
            atom_mask: optional bool ``[L, 12]``: atoms not present are not written (lociPARSE fills them in).
        """
        atoms = np.asarray(atoms, dtype=np.float64)
        if atoms.ndim != 3 or atoms.shape[1:] != (rna.NUM_ATOMS, 3):
            raise ValueError(f"LociParseScorer: atoms must be [L, {rna.NUM_ATOMS}, 3], got {atoms.shape}")
        if len(sequence) != len(atoms) or set(sequence) - set("ACGU"):
            raise ValueError(f"LociParseScorer: sequence must be {len(atoms)} letters of ACGU, got {sequence!r}")
        from flowbb.molecules.rna import RNA

        with tempfile.TemporaryDirectory() as tmp:
            path = write_backbone_pdb(Path(tmp) / "chain.pdb", atoms, residue_name=list(sequence), chain_id="A",
                                      atom_mask=atom_mask, atom_names=RNA().pdb_atom_names(sequence))
            return self.score_file(path)
