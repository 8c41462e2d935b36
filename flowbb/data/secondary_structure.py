"""Three-state secondary structure (DSSP) from backbone atoms.

``assign_dssp`` implements the DSSP algorithm of Kabsch & Sander (1983) in NumPy, following the rules of
the reference implementation (mkdssp 4): electrostatic H-bond energy
``E = 0.084 * 332 * (1/r_ON + 1/r_CH - 1/r_OH - 1/r_CN)`` kcal/mol with the amide H placed 1 A from N
opposite the previous residue's C=O, pairs screened at CA-CA < 9 A, the two lowest-energy acceptors kept per
donor, a bond when E < -0.5; n-turns (n = 3, 4, 5) and minimal helices (two consecutive n-turns),
alpha helices over 3-10 and pi helices, parallel and antiparallel bridges, ladders and beta bulges.
States are reduced to three: H (H, G, I), E (E, B), '-' (everything else). Only residue pairs within 9 A
are scored, so time and memory grow linearly with chain length (no L x L matrices).

This is ``method="kabsch_sander"`` (the default). ``method="pydssp"`` uses the pip package ``pydssp`` (dense
L x L, continuous H-bond map) instead; it is kept for comparison (its agreement with mkdssp is lower, see the
README's "Data" section). The former name of ``kabsch_sander``, ``flowbb``, is still accepted with a
``FutureWarning`` (:func:`dssp_method`).
"""

from __future__ import annotations

import warnings

import numpy as np

DSSP_METHODS = ("kabsch_sander", "pydssp")
DEPRECATED_DSSP_METHODS = {"flowbb": "kabsch_sander"}  # former name -> name

_COUPLING = -27.888  # -0.084 * 332 kcal/mol
_MIN_ENERGY = -9.9
_MAX_HBOND_ENERGY = -0.5
_MIN_DISTANCE = 0.5
_MIN_CA_DISTANCE = 9.0
_MAX_PEPTIDE_BOND = 2.5


def _hbond_keys(
    n: np.ndarray, ca: np.ndarray, c: np.ndarray, o: np.ndarray, h: np.ndarray, has_h: np.ndarray, length: int
) -> np.ndarray:
    """Sorted int64 keys donor * L + acceptor of the H-bonds (two best acceptors per donor, E < -0.5)."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(ca).query_pairs(_MIN_CA_DISTANCE, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64)
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    # donor lo -> acceptor hi always; donor hi -> acceptor lo unless adjacent (as mkdssp)
    donor = np.concatenate([lo, hi[hi - lo > 1]])
    acceptor = np.concatenate([hi, lo[hi - lo > 1]])
    keep = has_h[donor]
    donor, acceptor = donor[keep], acceptor[keep]
    d_ho = np.linalg.norm(o[acceptor] - h[donor], axis=-1)
    d_hc = np.linalg.norm(c[acceptor] - h[donor], axis=-1)
    d_nc = np.linalg.norm(c[acceptor] - n[donor], axis=-1)
    d_no = np.linalg.norm(o[acceptor] - n[donor], axis=-1)
    with np.errstate(divide="ignore"):
        energy = _COUPLING * (1.0 / d_ho - 1.0 / d_hc + 1.0 / d_nc - 1.0 / d_no)
    close = (d_ho < _MIN_DISTANCE) | (d_hc < _MIN_DISTANCE) | (d_nc < _MIN_DISTANCE) | (d_no < _MIN_DISTANCE)
    energy = np.where(close, _MIN_ENERGY, np.maximum(energy, _MIN_ENERGY))
    # two lowest energies per donor
    order = np.lexsort((energy, donor))
    donor, acceptor, energy = donor[order], acceptor[order], energy[order]
    first = np.ones(len(donor), dtype=bool)
    first[1:] = donor[1:] != donor[:-1]
    rank = np.arange(len(donor)) - np.maximum.accumulate(np.where(first, np.arange(len(donor)), 0))
    bond = (rank < 2) & (energy < _MAX_HBOND_ENERGY)
    return np.unique(donor[bond] * length + acceptor[bond])


def _dssp_kabsch_sander(atoms: np.ndarray, valid: np.ndarray, is_proline: np.ndarray) -> str:
    full_length = len(atoms)
    idx = np.nonzero(valid)[0]
    out = np.full(full_length, "-", dtype="<U1")
    if len(idx) < 3:
        return "".join(out)
    x = atoms[idx].astype(np.float64)
    length = len(idx)
    n, ca, c, o = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    # peptide bond i -> i+1 among the residues kept (missing residues break the chain)
    bonded = np.linalg.norm(n[1:] - c[:-1], axis=-1) < _MAX_PEPTIDE_BOND
    segment = np.concatenate([[0], np.cumsum(~bonded)])  # residues in one unbroken segment share an id

    co = c[:-1] - o[:-1]
    co /= np.maximum(np.linalg.norm(co, axis=-1, keepdims=True), 1e-8)
    h = n.copy()
    h[1:] = n[1:] + co
    has_h = np.concatenate([[False], bonded]) & ~is_proline[idx]
    keys = _hbond_keys(n, ca, c, o, h, has_h, length)

    def test_bond(donor: np.ndarray, acceptor: np.ndarray) -> np.ndarray:
        """NH(donor) -> O(acceptor) H-bond; indices outside [0, L) give False."""
        donor = np.asarray(donor)
        acceptor = np.asarray(acceptor)
        inside = (donor >= 0) & (donor < length) & (acceptor >= 0) & (acceptor < length)
        key = np.clip(donor, 0, length - 1) * length + np.clip(acceptor, 0, length - 1)
        pos = np.searchsorted(keys, key)
        found = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == key) if len(keys) else False
        return inside & found

    def no_break(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        inside = (a >= 0) & (b < length) & (a < length) & (b >= 0)
        return inside & (segment[np.clip(a, 0, length - 1)] == segment[np.clip(b, 0, length - 1)])

    ar = np.arange(length)
    ss = np.full(length, "-", dtype="<U1")

    # ---- bridges, ladders, bulges -> E
    i_idx, j_idx = (keys // length), (keys % length)
    cand = set()
    for di in (-1, 0, 1):  # a bridge (i, j) needs an H-bond between residues within one of i and of j
        for dj in (-1, 0, 1):
            cand.update(zip((i_idx + di).tolist(), (j_idx + dj).tolist()))
            cand.update(zip((j_idx + dj).tolist(), (i_idx + di).tolist()))
    if cand:
        pairs = np.array(
            sorted(p for p in cand if 1 <= p[0] and p[0] + 3 <= p[1] < length - 1), dtype=np.int64
        )
    else:
        pairs = np.zeros((0, 2), dtype=np.int64)
    strand = np.zeros(length, dtype=bool)
    if len(pairs):
        bi, bj = pairs[:, 0], pairs[:, 1]
        ok = no_break(bi - 1, bi + 1) & no_break(bj - 1, bj + 1)
        parallel = ok & (
            (test_bond(bi + 1, bj) & test_bond(bj, bi - 1)) | (test_bond(bj + 1, bi) & test_bond(bi, bj - 1))
        )
        anti = ok & (
            (test_bond(bi + 1, bj - 1) & test_bond(bj + 1, bi - 1)) | (test_bond(bj, bi) & test_bond(bi, bj))
        )
        bridges = [(int(a), int(b), "p") for a, b in pairs[parallel]] + [
            (int(a), int(b), "a") for a, b in pairs[anti & ~parallel]
        ]
        bridges.sort()
        ladders: list[dict] = []
        for bi_, bj_, kind in bridges:
            for lad in ladders:
                if (
                    lad["type"] != kind
                    or bi_ != lad["i"][-1] + 1
                    or not no_break(np.array(lad["i"][-1]), np.array(bi_))
                ):
                    continue
                if kind == "p" and lad["j"][-1] + 1 == bj_:
                    lad["i"].append(bi_)
                    lad["j"].append(bj_)
                    break
                if kind == "a" and lad["j"][0] - 1 == bj_:
                    lad["i"].append(bi_)
                    lad["j"].insert(0, bj_)
                    break
            else:
                ladders.append({"type": kind, "i": [bi_], "j": [bj_]})
        # beta bulges join ladders of the same type separated by a short gap
        a = 0
        while a < len(ladders):
            b = a + 1
            while b < len(ladders):
                la, lb = ladders[a], ladders[b]
                ibi, iei, jbi, jei = la["i"][0], la["i"][-1], la["j"][0], la["j"][-1]
                ibj, iej, jbj, jej = lb["i"][0], lb["i"][-1], lb["j"][0], lb["j"][-1]
                bulge = False
                if (
                    la["type"] == lb["type"]
                    and 0 < ibj - iei < 6
                    and no_break(np.array(min(ibi, ibj)), np.array(max(iei, iej)))
                    and no_break(np.array(min(jbi, jbj)), np.array(max(jei, jej)))
                ):
                    gap_j = jbj - jei if la["type"] == "p" else jbi - jej
                    bulge = (0 <= gap_j < 6 and ibj - iei < 3) or (0 <= gap_j < 3)
                if bulge:
                    la["i"] = sorted(set(la["i"] + lb["i"]))
                    la["j"] = sorted(set(la["j"] + lb["j"]))
                    del ladders[b]
                else:
                    b += 1
            a += 1
        for lad in ladders:
            strand[min(lad["i"]) : max(lad["i"]) + 1] = True
            strand[min(lad["j"]) : max(lad["j"]) + 1] = True
    ss[strand] = "E"

    # ---- n-turns and helices
    def turn_start(stride: int) -> np.ndarray:
        start = np.zeros(length, dtype=bool)
        k = ar[: max(length - stride, 0)]
        start[k] = test_bond(k + stride, k) & no_break(k, k + stride)
        return start

    # alpha helix overrides strands (mkdssp order); then pi on loop or alpha; then 3-10 only on loop
    for stride, allowed in ((4, None), (5, ("-", "I", "H")), (3, ("-", "G"))):
        start = turn_start(stride)
        label = {4: "H", 3: "G", 5: "I"}[stride]
        for i in np.nonzero(start[1:] & start[:-1])[0] + 1:
            seg = slice(i, min(i + stride, length))
            if allowed is None or np.isin(ss[seg], allowed).all():
                ss[seg] = label
    three = np.where(np.isin(ss, ("H", "G", "I")), "H", np.where(ss == "E", "E", "-"))
    out[idx] = three
    return "".join(out)


def _dssp_pydssp(atoms: np.ndarray, valid: np.ndarray) -> str:
    import pydssp  # imports torch; only on this path

    out = np.full(len(atoms), "-", dtype="<U1")
    idx = np.nonzero(valid)[0]
    if len(idx) >= 6:
        onehot = pydssp.assign(atoms[idx].astype(np.float64), out_type="onehot")
        out[idx] = np.array(["-", "H", "E"])[np.argmax(onehot, axis=-1)]
    return "".join(out)


def dssp_method(method: str) -> str:
    """The DSSP method named ``method``: one of :data:`DSSP_METHODS`, or a former name (``flowbb``), which is
    mapped to its new name with a ``FutureWarning`` (a deprecation shown to users).

    Raises:
        ValueError: an unknown method, naming the known ones.
    """
    if method in DEPRECATED_DSSP_METHODS:
        new = DEPRECATED_DSSP_METHODS[method]
        warnings.warn(f"dssp_method={method} is deprecated: it is now called dssp_method={new} (the same method)",
                      FutureWarning, stacklevel=3)
        return new
    if method not in DSSP_METHODS:
        raise ValueError(f"dssp_method={method}: expected one of {', '.join(DSSP_METHODS)}")
    return method


def assign_dssp(atoms, mask=None, sequence: str | None = None, method: str = "kabsch_sander") -> str:
    """Three-state DSSP string for one chain.

    Args:
        atoms: [L, 4, 3] N, CA, C, O coordinates (A), numpy or torch.
        mask: [L] residues to use or [L, 4] atom mask; residues lacking any of N, CA, C, O are '-' and
            break the chain for H-bond donors (None: all residues).
        sequence: one-letter sequence of length L; prolines are not H-bond donors (as in DSSP).
        method: "kabsch_sander" (this module's DSSP, the Kabsch & Sander rules as mkdssp applies them) or "pydssp"
            (see :func:`dssp_method`; "flowbb", the former name of "kabsch_sander", warns).
    Returns:
        str of length L over {'H', 'E', '-'}.
    """
    if hasattr(atoms, "detach"):
        atoms = atoms.detach().cpu().numpy()
    atoms = np.asarray(atoms, dtype=np.float64)
    if atoms.ndim != 3 or atoms.shape[1:] != (4, 3):
        raise ValueError(f"atoms must be [L, 4, 3] (N, CA, C, O), got {atoms.shape}")
    length = len(atoms)
    if mask is None:
        valid = np.ones(length, dtype=bool)
    else:
        if hasattr(mask, "detach"):
            mask = mask.detach().cpu().numpy()
        mask = np.asarray(mask).astype(bool)
        valid = mask.all(axis=-1) if mask.ndim == 2 else mask
        if valid.shape != (length,):
            raise ValueError(f"mask must be [L] or [L, 4] with L={length}, got {mask.shape}")
    valid = valid & np.isfinite(atoms).all(axis=(1, 2))
    if sequence is not None and len(sequence) != length:
        raise ValueError(f"sequence length {len(sequence)} != {length} residues")
    is_proline = (
        np.array([s == "P" for s in sequence], dtype=bool) if sequence else np.zeros(length, dtype=bool)
    )
    method = dssp_method(method)
    if method == "kabsch_sander":
        return _dssp_kabsch_sander(atoms, valid, is_proline)
    return _dssp_pydssp(atoms, valid)


def ss_fractions(ss: str, mask=None) -> dict[str, float]:
    """Fractions of H, E and coil in a 3-state string (over residues where ``mask`` [L] is True).

    Returns:
        dict(helix_frac, strand_frac, coil_frac); NaN for all three when no residue counts.
    """
    arr = np.frombuffer(ss.encode("ascii"), dtype="S1") if ss else np.zeros(0, dtype="S1")
    if mask is not None:
        if hasattr(mask, "detach"):
            mask = mask.detach().cpu().numpy()
        arr = arr[np.asarray(mask, dtype=bool)]
    total = len(arr)
    if total == 0:
        return {"helix_frac": float("nan"), "strand_frac": float("nan"), "coil_frac": float("nan")}
    helix = float((arr == b"H").sum()) / total
    strand = float((arr == b"E").sum()) / total
    return {"helix_frac": helix, "strand_frac": strand, "coil_frac": 1.0 - helix - strand}
