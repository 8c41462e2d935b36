"""Backbone atoms (N, CA, C, O) from residue frames with ideal geometry, dihedrals, psi from coordinates.

Ideal positions are AlphaFold2's (OpenFold ``rigid_group_atom_positions``) in the residue frame of
:func:`flowbb.geometry.rigid.frames_from_backbone`: N at (-0.525, 1.363, 0), CA at the origin,
C at (1.526, 0, 0). The carbonyl O sits at (0.627, 1.062, 0) in AlphaFold2's psi frame: origin at C,
x along CA -> C, y from CA - N orthogonalised against x, rotated about x by the psi torsion. With
psi = dihedral(N_i, CA_i, C_i, N_{i+1}) (IUPAC sign), O ends up with
dihedral(N_i, CA_i, C_i, O_i) = psi + pi, i.e. trans to the next residue's N, as in a planar peptide.
All functions are batched over leading dims; atoms ``[..., L, 4, 3]`` in the order N, CA, C, O (Å).
"""

from __future__ import annotations

import torch

from flowbb.geometry import rigid

Tensor = torch.Tensor

ATOM_ORDER = ("N", "CA", "C", "O")
IDEAL_N = (-0.525, 1.363, 0.0)
IDEAL_CA = (0.0, 0.0, 0.0)
IDEAL_C = (1.526, 0.0, 0.0)
IDEAL_O_IN_PSI_FRAME = (0.627, 1.062, 0.0)
# Peptide bond length above which residues i and i+1 count as not bonded (chain break).
MAX_PEPTIDE_BOND = 2.0


def _const(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def oxygen_local(psi: Tensor) -> Tensor:
    """Carbonyl O in the residue frame for torsion psi.

    The psi frame has axes ``ex = (1, 0, 0)`` (CA -> C), ``ey = (0, -1, 0)`` (CA - N orthogonalised
    against ex) and ``ez = ex x ey = (0, 0, -1)``, origin at C. The local point (0.627, 1.062, 0) is
    rotated about ex by ``psi`` (AlphaFold2's torsion rotation ``[[1,0,0],[0,c,-s],[0,s,c]]``),
    which gives ``O = (1.526 + 0.627, -1.062 cos psi, -1.062 sin psi)``.

    Args:
        psi: ``[...]`` radians.
    Returns:
        ``[..., 3]``.
    """
    ox, oy, _ = IDEAL_O_IN_PSI_FRAME
    x = torch.full_like(psi, IDEAL_C[0] + ox)
    return torch.stack([x, -oy * torch.cos(psi), -oy * torch.sin(psi)], dim=-1)


def backbone_from_frames(
    rots: Tensor, trans: Tensor, psi: Tensor | None = None, res_mask: Tensor | None = None
) -> Tensor:
    """Ideal backbone atoms N, CA, C, O from residue frames and psi torsions.

    Args:
        rots: ``[..., L, 3, 3]`` residue rotations (columns: local axes).
        trans: ``[..., L, 3]`` CA positions (Å).
        psi: ``[..., L]`` radians; ``None`` means psi = 0 everywhere (only sensible when O is unused).
        res_mask: optional ``[..., L]``; masked residues come out as zeros.
    Returns:
        ``[..., L, 4, 3]`` (N, CA, C, O), Å.
    """
    if rots.shape[-2:] != (3, 3) or trans.shape[-1] != 3 or rots.shape[:-2] != trans.shape[:-1]:
        raise ValueError(
            f"backbone_from_frames: rots [..., L, 3, 3] and trans [..., L, 3] must agree, "
            f"got {tuple(rots.shape)} and {tuple(trans.shape)}"
        )
    if psi is None:
        psi = torch.zeros(trans.shape[:-1], dtype=trans.dtype, device=trans.device)
    elif psi.shape != trans.shape[:-1]:
        raise ValueError(
            f"backbone_from_frames: psi must have shape {tuple(trans.shape[:-1])}, got {tuple(psi.shape)}"
        )
    n_loc = _const(IDEAL_N, trans).expand_as(trans)
    c_loc = _const(IDEAL_C, trans).expand_as(trans)
    o_loc = oxygen_local(psi.to(trans.dtype))
    local = torch.stack([n_loc, torch.zeros_like(trans), c_loc, o_loc], dim=-2)  # [..., L, 4, 3]
    atoms = rigid.apply(rots[..., None, :, :], trans[..., None, :], local)
    if res_mask is not None:
        atoms = atoms * res_mask[..., None, None].to(atoms.dtype)
    return atoms


def dihedral(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """Dihedral angle a-b-c-d in ``(-pi, pi]`` (IUPAC sign: clockwise looking along b -> c is positive).

    ``atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3))`` with ``b1 = b - a``, ``b2 = c - b``, ``b3 = d - c``.

    Args:
        a, b, c, d: ``[..., 3]``.
    Returns:
        ``[...]`` radians.
    """
    b1, b2, b3 = b - a, c - b, d - c
    n1 = torch.cross(b1, b2, dim=-1)
    n2 = torch.cross(b2, b3, dim=-1)
    y = torch.linalg.vector_norm(b2, dim=-1) * (b1 * n2).sum(-1)
    x = (n1 * n2).sum(-1)
    return torch.atan2(y, x)


def psi_from_backbone(
    atoms: Tensor, res_mask: Tensor, residue_index: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Backbone psi torsions ``psi_i = dihedral(N_i, CA_i, C_i, N_{i+1})`` from coordinates.

    psi_i is valid when residues i and i+1 are both valid, the peptide bond C_i-N_{i+1} is at most
    2 Å long, and (when ``residue_index`` is given) ``residue_index[i+1] > residue_index[i]``
    (guards against concatenated chains whose numbering restarts). The last residue is never valid.

    Args:
        atoms: ``[..., L, 4, 3]`` (N, CA, C, O).
        res_mask: ``[..., L]`` (bool or 0/1; residue has N, CA, C).
        residue_index: optional ``[..., L]`` residue numbering.
    Returns:
        psi ``[..., L]`` (radians, 0 where invalid), psi_mask ``[..., L]`` bool.
    """
    if atoms.shape[-2:] != (4, 3) or atoms.shape[:-2] != res_mask.shape:
        raise ValueError(
            f"psi_from_backbone: atoms [..., L, 4, 3] and res_mask [..., L] must agree, "
            f"got {tuple(atoms.shape)} and {tuple(res_mask.shape)}"
        )
    mask = res_mask.bool()
    n, ca, c = atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :]
    n_next = n[..., 1:, :]
    valid = mask[..., :-1] & mask[..., 1:]
    bond = torch.linalg.vector_norm(c[..., :-1, :] - n_next, dim=-1)
    valid = valid & (bond <= MAX_PEPTIDE_BOND)
    if residue_index is not None:
        if residue_index.shape != res_mask.shape:
            raise ValueError(
                f"psi_from_backbone: residue_index must have shape {tuple(res_mask.shape)}, got {tuple(residue_index.shape)}"
            )
        valid = valid & (residue_index[..., 1:] > residue_index[..., :-1])
    psi = dihedral(n[..., :-1, :], ca[..., :-1, :], c[..., :-1, :], n_next)
    psi = torch.where(valid, psi, torch.zeros_like(psi))
    pad = torch.zeros_like(psi[..., :1])
    psi_mask = torch.cat([valid, torch.zeros_like(valid[..., :1])], dim=-1)
    return torch.cat([psi, pad], dim=-1), psi_mask


def oxygen_from_next_n(n: Tensor, ca: Tensor, c: Tensor, n_next: Tensor) -> Tensor:
    """Ideal carbonyl O of residue i from its N, CA, C and the next residue's N.

    Equivalent to placing O with ``psi = dihedral(N_i, CA_i, C_i, N_{i+1})`` on the frame of residue i.

    Args:
        n, ca, c, n_next: ``[..., 3]``.
    Returns:
        ``[..., 3]``.
    """
    rots, trans = rigid.frames_from_backbone(n, ca, c)
    psi = dihedral(n, ca, c, n_next)
    return rigid.apply(rots, trans, oxygen_local(psi))
