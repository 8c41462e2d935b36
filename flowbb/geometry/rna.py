"""RNA nucleotide frames, the eight backbone torsions, and backbone atoms rebuilt from frames + torsions.

RNA-FrameFlow's parametrisation, with flowbb's conventions (frames map local to global, Å, batch first).

**Frame.** Per nucleotide, origin at C4', x axis along O4' - C4', y from C3' - C4' made orthogonal to x,
z = x cross y: :func:`flowbb.geometry.rigid.frames_from_backbone` with (n, ca, c) = (C3', C4', O4').

**Atoms** ``[..., L, 12, 3]`` in the order :data:`ATOM_ORDER`:
C4', O4', C3' (frame atoms), C5', C2', C1', N, O3', O5', P, OP1, OP2. "N" is the glycosidic base atom,
N9 for purines and N1 for pyrimidines. P, OP1 and OP2 are the 5' phosphate of the *same* nucleotide
(PDB convention: P(i) is bonded to O5'(i) and to O3'(i-1)).

**Rebuild order** (each atom from atoms placed before it; no torsion uses a neighbouring nucleotide):

1. C4', O4', C3', C5' from the frame at their ideal frame-local positions (C5' is fixed by the chirality
   at C4', so it needs no torsion);
2. then eight atoms, each placed by one torsion ``dihedral(a, b, c, d)`` (IUPAC sign) of :data:`TORSIONS`
   from the already placed a, b, c with the ideal bond length |c - d| and bond angle b-c-d of
   :data:`IDEAL_BONDS` / :data:`IDEAL_ANGLES`:

   ====  =====  ========================  ================================================
   k     atom   torsion a-b-c-d           meaning
   ====  =====  ========================  ================================================
   0     C2'    C5'-C4'-C3'-C2'
   1     C1'    C3'-C4'-O4'-C1'
   2     N      C4'-O4'-C1'-N              (N9 / N1)
   3     O3'    C5'-C4'-C3'-O3'            delta
   4     O5'    C3'-C4'-C5'-O5'            gamma (= O5'-C5'-C4'-C3')
   5     P      C4'-C5'-O5'-P              beta (= P-O5'-C5'-C4')
   6     OP1    C5'-O5'-P-OP1              beside alpha = C5'-O5'-P-O3'(i-1) (reversed)
   7     OP2    C5'-O5'-P-OP2
   ====  =====  ========================  ================================================

   The phosphate oxygens hang on the P-O5' bond beside O3'(i-1), whose dihedral C5'-O5'-P-O3'(i-1) is the
   backbone torsion alpha; OP1 and OP2 are measured against C5' of the same nucleotide instead (in the
   real set OP1 = alpha + 114 and OP2 = alpha - 115 degrees, medians, 90 % within +-3 degrees), so that every
   torsion, and the rebuild, is local to one nucleotide: no torsion needs the previous or next nucleotide,
   and chain ends need no special case (alpha itself, with epsilon and zeta, is a two-nucleotide torsion).
   Torsions whose atoms are missing (e.g. P, OP1, OP2 at a 5' end without phosphate) are masked.

**Ideal geometry.** Every constant below is a median over all nucleotides of the 199 experimental chains
of ``../shared/data/rna`` (pooled: 14,001 nucleotides, 13,894-13,993 of them with the atoms each constant
needs) measured with :func:`measure_ideal_geometry`; ``scripts/derive_rna_geometry.py`` re-derives and
prints them and ``tests/geometry/test_rna.py`` checks that they agree (0.002 Å, 0.2 degrees). Purines and
pyrimidines share the constants (C1'-N9 vs C1'-N1: 1.4733 vs 1.4805 Å; O4'-C1'-N 108.64 vs 108.85 degrees).
"""

from __future__ import annotations

import math

import torch

from flowbb.geometry import rigid
from flowbb.geometry.backbone import dihedral

Tensor = torch.Tensor

ATOM_ORDER = ("C4'", "O4'", "C3'", "C5'", "C2'", "C1'", "N", "O3'", "O5'", "P", "OP1", "OP2")
ATOM_INDEX = {name: k for k, name in enumerate(ATOM_ORDER)}
NUM_ATOMS = len(ATOM_ORDER)
#: the four atoms of each torsion; the last one is the atom the torsion places (see module docstring)
TORSIONS = (
    ("C5'", "C4'", "C3'", "C2'"),
    ("C3'", "C4'", "O4'", "C1'"),
    ("C4'", "O4'", "C1'", "N"),
    ("C5'", "C4'", "C3'", "O3'"),
    ("C3'", "C4'", "C5'", "O5'"),
    ("C4'", "C5'", "O5'", "P"),
    ("C5'", "O5'", "P", "OP1"),
    ("C5'", "O5'", "P", "OP2"),
)
TORSION_NAMES = ("C2'", "C1'", "N", "delta", "gamma", "beta", "OP1", "OP2")
NUM_TORSIONS = len(TORSIONS)
_TORSION_IDX = tuple(tuple(ATOM_INDEX[a] for a in t) for t in TORSIONS)

# --- ideal geometry: medians over ../shared/data/rna (see module docstring; do not edit by hand) ----------
#: frame-local coordinates (Å) of O4', C3', C5' (C4' is the origin)
IDEAL_LOCAL = {
    "O4'": (1.4513, 0.0, 0.0),
    "C3'": (-0.3683, 1.4742, 0.0),
    "C5'": (-0.5103, -0.8075, -1.1678),
}
#: bond length |c - d| (Å) for each placed atom d of :data:`TORSIONS`
IDEAL_BONDS = {
    "C2'": 1.5227,
    "C1'": 1.4131,
    "N": 1.4752,
    "O3'": 1.4171,
    "O5'": 1.4201,
    "P": 1.5927,
    "OP1": 1.4846,
    "OP2": 1.4847,
}
#: bond angle b-c-d (degrees) for each placed atom d of :data:`TORSIONS`
IDEAL_ANGLES = {
    "C2'": 102.48,
    "C1'": 109.82,
    "N": 108.74,
    "O3'": 112.64,
    "O5'": 111.42,
    "P": 120.81,
    "OP1": 108.08,
    "OP2": 108.04,
}


def _local_table(like: Tensor) -> Tensor:
    """``[4, 3]`` ideal frame-local C4', O4', C3', C5'."""
    rows = [(0.0, 0.0, 0.0)] + [IDEAL_LOCAL[a] for a in ("O4'", "C3'", "C5'")]
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def ideal_frame_atoms(rots: Tensor, trans: Tensor) -> Tensor:
    """C4', O4', C3', C5' at their ideal frame-local positions (:data:`IDEAL_LOCAL`): the atoms a frame fixes.

    Args:
        rots: ``[..., L, 3, 3]``; trans: ``[..., L, 3]`` (C4', Å).
    Returns:
        ``[..., L, 4, 3]`` in :data:`ATOM_ORDER` (its first four atoms).
    """
    return rigid.apply(rots[..., None, :, :], trans[..., None, :], _local_table(trans))


def frames_from_atoms(atoms: Tensor, atom_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Nucleotide frames from C4' (origin), O4' (x axis) and C3' (xy plane).

    Args:
        atoms: ``[..., L, 12, 3]`` in :data:`ATOM_ORDER` (only C4', O4', C3' are read).
        atom_mask: optional ``[..., L, 12]`` bool/0-1 atom presence.
    Returns:
        rots ``[..., L, 3, 3]`` (columns: local axes), trans ``[..., L, 3]`` (= C4'),
        frame_mask ``[..., L]`` bool (C4', O4', C3' present; all True without ``atom_mask``).
        Frames of masked nucleotides are zeroed.
    """
    if atoms.shape[-2:] != (NUM_ATOMS, 3):
        raise ValueError(
            f"frames_from_atoms: atoms must be [..., L, {NUM_ATOMS}, 3], got {tuple(atoms.shape)}"
        )
    c4, o4, c3 = atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :]
    rots, trans = rigid.frames_from_backbone(c3, c4, o4)
    if atom_mask is None:
        return rots, trans, torch.ones(atoms.shape[:-2], dtype=torch.bool, device=atoms.device)
    frame_mask = atom_mask[..., :3].bool().all(-1)
    m = frame_mask.to(atoms.dtype)
    return rots * m[..., None, None], trans * m[..., None], frame_mask


def torsions_from_atoms(atoms: Tensor, atom_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The eight torsions of :data:`TORSIONS` as (sin, cos) pairs from coordinates.

    Args:
        atoms: ``[..., L, 12, 3]`` in :data:`ATOM_ORDER`.
        atom_mask: optional ``[..., L, 12]``; a torsion is valid when its four atoms are present.
    Returns:
        torsions ``[..., L, 8, 2]`` (sin, cos), (0, 1) where invalid; torsion_mask ``[..., L, 8]`` bool.
        Differentiable; masked entries get zero gradient (no NaN from missing, all-zero atoms).
    """
    if atoms.shape[-2:] != (NUM_ATOMS, 3):
        raise ValueError(
            f"torsions_from_atoms: atoms must be [..., L, {NUM_ATOMS}, 3], got {tuple(atoms.shape)}"
        )
    idx = torch.tensor(_TORSION_IDX, device=atoms.device)  # [8, 4]
    quad = atoms[..., idx, :]  # [..., L, 8, 4, 3]
    if atom_mask is None:
        mask = torch.ones(quad.shape[:-2], dtype=torch.bool, device=atoms.device)
    else:
        mask = atom_mask.bool()[..., idx].all(-1)
        # masked torsions are measured on a fixed regular quadruple, so that gradients stay finite
        regular = torch.tensor(
            [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=atoms.dtype
        )
        quad = torch.where(mask[..., None, None], quad, regular.to(atoms.device))
    angle = dihedral(quad[..., 0, :], quad[..., 1, :], quad[..., 2, :], quad[..., 3, :])
    sin = torch.where(mask, torch.sin(angle), torch.zeros_like(angle))
    cos = torch.where(mask, torch.cos(angle), torch.ones_like(angle))
    return torch.stack([sin, cos], dim=-1), mask


def place_atom(a: Tensor, b: Tensor, c: Tensor, bond: float, angle: float, sin_cos: Tensor) -> Tensor:
    """Atom d with ``|c - d| = bond``, angle b-c-d = ``angle`` and dihedral(a, b, c, d) given by (sin, cos).

    NeRF: ``d = c + bond (-cos(angle) u + sin(angle) (cos t m + sin t n))``
    with ``u`` the unit vector b -> c, ``n`` the unit normal of the a-b-c plane and ``m = n x u``.

    Args:
        a, b, c: ``[..., 3]``.
        bond: Å. angle: radians.
        sin_cos: ``[..., 2]`` (sin t, cos t); normalised here (need not be unit length).
    Returns:
        ``[..., 3]``.
    """
    eps = torch.finfo(c.dtype).eps
    u = c - b
    u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(eps)
    n = torch.cross(b - a, u, dim=-1)
    n = n / torch.linalg.vector_norm(n, dim=-1, keepdim=True).clamp_min(eps)
    m = torch.cross(n, u, dim=-1)
    sc = sin_cos / torch.linalg.vector_norm(sin_cos, dim=-1, keepdim=True).clamp_min(eps)
    s, t = sc[..., 0:1], sc[..., 1:2]
    return c + bond * (-math.cos(angle) * u + math.sin(angle) * (t * m + s * n))


def atoms_from_frames(
    rots: Tensor, trans: Tensor, torsions: Tensor, res_mask: Tensor | None = None
) -> Tensor:
    """Rebuild the 12 backbone atoms of every nucleotide from its frame and eight torsions.

    Args:
        rots: ``[..., L, 3, 3]``; trans: ``[..., L, 3]`` (C4', Å).
        torsions: ``[..., L, 8, 2]`` (sin, cos) in :data:`TORSIONS` order (normalised here).
        res_mask: optional ``[..., L]``; masked nucleotides come out as zeros.
    Returns:
        ``[..., L, 12, 3]`` in :data:`ATOM_ORDER`, same dtype as ``trans``.
    """
    lead = trans.shape[:-1]
    if rots.shape != (*lead, 3, 3) or torsions.shape != (*lead, NUM_TORSIONS, 2):
        raise ValueError(
            f"atoms_from_frames: rots [..., L, 3, 3], trans [..., L, 3], torsions [..., L, 8, 2] must agree, "
            f"got {tuple(rots.shape)}, {tuple(trans.shape)}, {tuple(torsions.shape)}"
        )
    torsions = torsions.to(trans.dtype)
    frame_atoms = ideal_frame_atoms(rots, trans)  # [..., L, 4, 3]
    placed: dict[str, Tensor] = {name: frame_atoms[..., k, :] for k, name in enumerate(ATOM_ORDER[:4])}
    for k, (a, b, c, d) in enumerate(TORSIONS):
        placed[d] = place_atom(
            placed[a],
            placed[b],
            placed[c],
            IDEAL_BONDS[d],
            math.radians(IDEAL_ANGLES[d]),
            torsions[..., k, :],
        )
    atoms = torch.stack([placed[name] for name in ATOM_ORDER], dim=-2)
    if res_mask is not None:
        atoms = atoms * res_mask[..., None, None].to(atoms.dtype)
    return atoms


def bond_angle(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Angle a-b-c in radians, ``[..., 3]`` -> ``[...]``."""
    u, v = a - b, c - b
    cos = (u * v).sum(-1) / (torch.linalg.vector_norm(u, dim=-1) * torch.linalg.vector_norm(v, dim=-1))
    return torch.acos(cos.clamp(-1.0, 1.0))


def measure_ideal_geometry(
    atoms: Tensor, atom_mask: Tensor
) -> dict[str, dict[str, tuple[float, ...] | float]]:
    """Medians of the geometry that :func:`atoms_from_frames` takes as ideal, over all given nucleotides.

    Args:
        atoms: ``[N, 12, 3]`` nucleotides pooled from real chains (float64 recommended).
        atom_mask: ``[N, 12]``; each quantity uses the nucleotides that have all the atoms it needs.
    Returns:
        ``{"local": {atom: (x, y, z)}, "bonds": {atom: Å}, "angles": {atom: degrees}, "counts": {atom: n}}``
        keyed as :data:`IDEAL_LOCAL`, :data:`IDEAL_BONDS`, :data:`IDEAL_ANGLES`.
    """
    mask = atom_mask.bool()
    rots, trans, frame_mask = frames_from_atoms(atoms, mask)
    local_all = rigid.apply_inverse(rots[:, None], trans[:, None], atoms)  # [N, 12, 3]
    out: dict[str, dict] = {"local": {}, "bonds": {}, "angles": {}, "counts": {}}
    for name in ("O4'", "C3'", "C5'"):
        k = ATOM_INDEX[name]
        sel = frame_mask & mask[:, k]
        med = local_all[sel, k].median(dim=0).values
        if name == "O4'":
            med[1:] = 0.0  # on the x axis by construction
        elif name == "C3'":
            med[2] = 0.0  # in the xy plane by construction
        out["local"][name] = tuple(round(float(v), 4) for v in med)
    for (_, b, c, d), idx in zip(TORSIONS, _TORSION_IDX):
        sel = mask[:, list(idx[1:])].all(-1)
        pb, pc, pd = atoms[sel, idx[1]], atoms[sel, idx[2]], atoms[sel, idx[3]]
        out["bonds"][d] = round(float(torch.linalg.vector_norm(pd - pc, dim=-1).median()), 4)
        out["angles"][d] = round(math.degrees(float(bond_angle(pb, pc, pd).median())), 2)
        out["counts"][d] = int(sel.sum())
    return out


# --- covalent geometry of rebuilt (or real) backbones, for geometry checks -----------------------------------
# An atom name with a "+" suffix is that atom of the next nucleotide (i + 1): the O3'(i)-P(i+1) link.
#: covalent bonds between the 12 atoms (and the O3'-P link to the next nucleotide)
BONDS = (
    ("C4'", "O4'"), ("C4'", "C3'"), ("C4'", "C5'"), ("C3'", "C2'"), ("C2'", "C1'"), ("C1'", "O4'"), ("C1'", "N"),
    ("C3'", "O3'"), ("C5'", "O5'"), ("O5'", "P"), ("P", "OP1"), ("P", "OP2"), ("O3'", "P+"),
)
#: bond angles a-b-c over the bonds of :data:`BONDS` (b is the vertex)
ANGLES = (
    ("O4'", "C4'", "C3'"), ("O4'", "C4'", "C5'"), ("C3'", "C4'", "C5'"), ("C4'", "C3'", "C2'"),
    ("C4'", "C3'", "O3'"), ("C2'", "C3'", "O3'"), ("C3'", "C2'", "C1'"), ("C2'", "C1'", "O4'"),
    ("C2'", "C1'", "N"), ("O4'", "C1'", "N"), ("C4'", "O4'", "C1'"), ("C4'", "C5'", "O5'"), ("C5'", "O5'", "P"),
    ("O5'", "P", "OP1"), ("O5'", "P", "OP2"), ("OP1", "P", "OP2"), ("C3'", "O3'", "P+"), ("O3'", "P+", "O5'+"),
    ("O3'", "P+", "OP1+"), ("O3'", "P+", "OP2+"),
)
# medians over all nucleotides of the 199 chains of ../shared/data/rna (float64; links only between consecutive
# nucleotides with O3'-P+ < 2 Å), measured with measure_bond_geometry; tests/geometry/test_rna.py re-derives them
#: median bond length (Å) of each bond of :data:`BONDS`, keyed "a-b"
REAL_BOND_MEDIANS: dict[str, float] = {
    "C4'-O4'": 1.4513, "C4'-C3'": 1.5203, "C4'-C5'": 1.5079, "C3'-C2'": 1.5227, "C2'-C1'": 1.5278,
    "C1'-O4'": 1.4131, "C1'-N": 1.4752, "C3'-O3'": 1.4171, "C5'-O5'": 1.4201, "O5'-P": 1.5927,
    "P-OP1": 1.4846, "P-OP2": 1.4847, "O3'-P+": 1.6061,
}
#: median bond angle (degrees) of each angle of :data:`ANGLES`, keyed "a-b-c"
REAL_ANGLE_MEDIANS: dict[str, float] = {
    "O4'-C4'-C3'": 104.02, "O4'-C4'-C5'": 109.78, "C3'-C4'-C5'": 115.83, "C4'-C3'-C2'": 102.48,
    "C4'-C3'-O3'": 112.64, "C2'-C3'-O3'": 113.48, "C3'-C2'-C1'": 101.34, "C2'-C1'-O4'": 107.49,
    "C2'-C1'-N": 112.53, "O4'-C1'-N": 108.74, "C4'-O4'-C1'": 109.82, "C4'-C5'-O5'": 111.42,
    "C5'-O5'-P": 120.81, "O5'-P-OP1": 108.08, "O5'-P-OP2": 108.04, "OP1-P-OP2": 119.63,
    "C3'-O3'-P+": 120.16, "O3'-P+-O5'+": 103.85, "O3'-P+-OP1+": 107.93, "O3'-P+-OP2+": 108.16,
}
#: C4' pairs with |i - j| >= C4_CLASH_MIN_SEQ_SEP closer than this (Å) clash (real set: 1 pair in 14,001 nucleotides)
C4_CLASH_DISTANCE = 3.5
C4_CLASH_MIN_SEQ_SEP = 2
#: O3'(i)-P(i+1) longer than this (Å) is a chain break in real structures (not a bond)
LINK_BREAK = 2.0


def _slot(name: str) -> int:
    """Index of an atom in ``[..., L, 24, 3]`` (this nucleotide's 12 atoms, then the next one's)."""
    return ATOM_INDEX[name[:-1]] + NUM_ATOMS if name.endswith("+") else ATOM_INDEX[name]


def bond_geometry(
    atoms: Tensor, atom_mask: Tensor | None = None, link_break: float | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bond lengths of :data:`BONDS` and bond angles of :data:`ANGLES` of every nucleotide.

    Args:
        atoms: ``[..., L, 12, 3]`` in :data:`ATOM_ORDER` (Å); nucleotide i + 1 follows i along the L axis.
        atom_mask: optional ``[..., L, 12]`` atom presence (masked residues: all False).
        link_break: when given, terms that use the next nucleotide count only where O3'(i)-P(i+1) is shorter
            (e.g. :data:`LINK_BREAK` for real chains with breaks; ``None`` for generated chains, all bonded).
    Returns:
        lengths ``[..., L, len(BONDS)]`` (Å), bond_mask (same shape, bool), angles ``[..., L, len(ANGLES)]``
        (degrees), angle_mask (bool). Terms of the last nucleotide that need the next one are masked.
    """
    if atoms.shape[-2:] != (NUM_ATOMS, 3):
        raise ValueError(f"bond_geometry: atoms must be [..., L, {NUM_ATOMS}, 3], got {tuple(atoms.shape)}")
    present = (torch.ones(atoms.shape[:-1], dtype=torch.bool, device=atoms.device) if atom_mask is None
               else atom_mask.bool())
    nxt = torch.cat([atoms[..., 1:, :, :], torch.zeros_like(atoms[..., :1, :, :])], dim=-3)
    nxt_mask = torch.cat([present[..., 1:, :], torch.zeros_like(present[..., :1, :])], dim=-2)
    ext = torch.cat([atoms, nxt], dim=-2)  # [..., L, 24, 3]
    ext_mask = torch.cat([present, nxt_mask], dim=-1)
    if link_break is not None:
        link = torch.linalg.vector_norm(ext[..., _slot("P+"), :] - ext[..., _slot("O3'"), :], dim=-1)
        ext_mask = ext_mask & torch.cat([torch.ones_like(present), (link < link_break)[..., None].expand_as(present)],
                                        dim=-1)
    bi = torch.tensor([[_slot(a), _slot(b)] for a, b in BONDS], device=atoms.device)
    ai = torch.tensor([[_slot(a), _slot(b), _slot(c)] for a, b, c in ANGLES], device=atoms.device)
    lengths = torch.linalg.vector_norm(ext[..., bi[:, 0], :] - ext[..., bi[:, 1], :], dim=-1)
    angles = torch.rad2deg(bond_angle(ext[..., ai[:, 0], :], ext[..., ai[:, 1], :], ext[..., ai[:, 2], :]))
    return lengths, ext_mask[..., bi].all(-1), angles, ext_mask[..., ai].all(-1)


def measure_bond_geometry(chains: list[tuple[Tensor, Tensor]]) -> tuple[dict[str, float], dict[str, float]]:
    """Medians of :func:`bond_geometry` over real chains (links across breaks, O3'-P+ >= :data:`LINK_BREAK`, left
    out): the values of :data:`REAL_BOND_MEDIANS` and :data:`REAL_ANGLE_MEDIANS`.

    Args:
        chains: (atoms ``[L, 12, 3]``, atom_mask ``[L, 12]``) per chain.
    Returns:
        (bond medians keyed "a-b" in Å, angle medians keyed "a-b-c" in degrees), rounded to 4 / 2 decimals.
    """
    parts = [bond_geometry(a, m, link_break=LINK_BREAK) for a, m in chains]
    lengths, bmask = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    angles, amask = torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts])
    bonds = {"-".join(b): round(float(lengths[bmask[:, k], k].median()), 4) for k, b in enumerate(BONDS)}
    angs = {"-".join(a): round(float(angles[amask[:, k], k].median()), 2) for k, a in enumerate(ANGLES)}
    return bonds, angs
