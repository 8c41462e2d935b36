"""RNA reader on every chain of ../shared/data/rna, and on real files edited to carry what the set lacks
(modified and DNA nucleotides, mmCIF, broken files)."""

from __future__ import annotations

import csv
import gzip
from io import StringIO
from pathlib import Path

import numpy as np
import pytest

from flowbb.data import nucleic
from flowbb.data.nucleic import RNA_ATOMS, RNAChain, read_rna_chains
from flowbb.data.structure_io.files import EMPTY, TRUNCATED_GZIP, StructureReadError

REASONS = {
    nucleic.MISSING_FRAME,
    nucleic.MISSING_ATOMS,
    nucleic.UNKNOWN_PARENT,
    nucleic.DNA_NUCLEOTIDE,
    nucleic.BASE_NOT_BONDED,
    nucleic.INVERTED_C4,
}


@pytest.fixture(scope="module")
def rna_dir(shared_data: Path) -> Path:
    """All 199 chains of ../shared/data/rna (skips without it)."""
    return shared_data / "rna"


@pytest.fixture(scope="module")
def core_rna_dir(core_data: Path) -> Path:
    """../shared/data/rna, or tests/resources/rna (1XJR only) without it."""
    return core_data / "rna"


@pytest.fixture(scope="module")
def index_rows(rna_dir: Path) -> list[dict]:
    with open(rna_dir / "index.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 199
    return rows


def _one(path: Path) -> RNAChain:
    chains = read_rna_chains(path)
    assert len(chains) == 1, path
    return chains[0]


def test_atom_order_is_the_geometry_order() -> None:
    from flowbb.geometry import rna

    assert RNA_ATOMS == rna.ATOM_ORDER
    assert [RNA_ATOMS[k] for k in nucleic.FRAME_ATOMS] == ["C4'", "O4'", "C3'"]


def test_every_chain_matches_the_index(rna_dir: Path, index_rows: list[dict]) -> None:
    """Chain id, sequence (nucleotides with a frame), breaks as in index.tsv; masks, problems consistent."""
    reasons: dict[str, int] = {}
    for row in index_rows:
        chain = _one(rna_dir / row["file"])
        name = row["file"]
        assert chain.chain_id == row["chain"], name
        assert "".join(np.array(list(chain.sequence))[chain.res_mask]) == row["sequence"], name
        assert chain.length - int(row["n_nt"]) in (0, 1), (
            name
        )  # + a nucleotide without frame atoms (reported)
        if row["chain_breaks"]:
            assert chain.chain_breaks == int(float(row["chain_breaks"])), name
        assert chain.atoms.shape == (chain.length, 12, 3) and chain.atoms.dtype == np.float32
        assert chain.atom_mask.shape == (chain.length, 12)
        assert (chain.atoms[~chain.atom_mask] == 0).all()
        assert len(chain.break_after) == chain.length - 1
        assert (np.diff(chain.residue_index) >= 1).all()
        assert (np.diff(chain.residue_index)[chain.break_after] >= 2).all()
        assert set(chain.sequence) <= set("ACGU")
        for p in chain.problems:
            assert p.reason in REASONS, p
            reasons[p.reason] = reasons.get(p.reason, 0) + 1
            if p.reason in (nucleic.MISSING_ATOMS, nucleic.MISSING_FRAME):
                missing = {a for a, m in zip(RNA_ATOMS, chain.atom_mask[p.position]) if not m}
                assert missing == set(p.detail.split()), (name, p)
        # every nucleotide without a problem has all 12 atoms
        flagged = {p.position for p in chain.problems}
        complete = chain.atom_mask.all(axis=1)
        assert all(complete[i] for i in range(chain.length) if i not in flagged), name
    print(f"\nproblems over the 199 chains: {reasons}")
    assert reasons[nucleic.MISSING_ATOMS] >= 100 and reasons[nucleic.MISSING_FRAME] == 8
    assert reasons[nucleic.INVERTED_C4] == 19 and reasons[nucleic.BASE_NOT_BONDED] == 4


def test_old_atom_names_and_known_partial_nucleotides(rna_dir: Path) -> None:
    """``C4*``/``O1P`` names are normalised; a 3' nucleotide with only its phosphate is kept and reported."""
    old = _one(rna_dir / "rnapuzzles__10_solution1__B.pdb.gz")
    assert old.res_mask.all() and old.atom_mask[:, RNA_ATOMS.index("OP1")].sum() >= old.length - 1
    tail = _one(rna_dir / "medium__5czz_b__B.pdb.gz")
    last = tail.problems[-1]
    assert (last.position, last.residue_number, last.reason) == (tail.length - 1, 73, nucleic.MISSING_FRAME)
    assert not tail.res_mask[-1] and tail.atom_mask[-1, RNA_ATOMS.index("P")]
    mirrored = _one(rna_dir / "medium__rp34__A.pdb.gz")
    assert sum(p.reason == nucleic.INVERTED_C4 for p in mirrored.problems) == 16


def _edit_residues(text: str, renames: dict[int, str]) -> str:
    """Rename residues (by author number) in PDB ATOM lines."""
    out = []
    for line in text.splitlines():
        if line.startswith("ATOM") and int(line[22:26]) in renames:
            line = f"{line[:17]}{renames[int(line[22:26])]:>3}{line[20:]}"
        out.append(line)
    return "\n".join(out) + "\n"


def test_modified_dna_and_unknown_residues(core_rna_dir: Path, tmp_path: Path) -> None:
    """OMG -> G and 5MC -> C (CCD parents); PSU's C-glycosidic C5 is not bonded in a renamed U (reported);
    a DNA nucleotide is dropped, reported and leaves a chain break; a non-nucleotide name is ignored."""
    src = core_rna_dir / "medium__1XJR__A.pdb.gz"
    base = _one(src)
    text = gzip.decompress(src.read_bytes()).decode()
    numbers = base.residue_numbers.tolist()
    g, c, u = (numbers[base.sequence.index(x, 5)] for x in "GCU")
    dna, other = numbers[20], numbers[30]
    edited = _edit_residues(text, {g: "OMG", c: "5MC", u: "PSU", dna: "DA", other: "HOH"})
    path = tmp_path / "edited.pdb.gz"
    path.write_bytes(gzip.compress(edited.encode()))
    chain = _one(path)
    assert chain.length == base.length - 2
    keep = [i for i, n in enumerate(numbers) if n not in (dna, other)]
    assert chain.sequence == "".join(base.sequence[i] for i in keep)
    pos = {n: i for i, n in enumerate(chain.residue_numbers.tolist())}
    assert chain.res_names[pos[g]] == "OMG" and chain.res_names[pos[c]] == "5MC"
    by_reason = {p.reason: p for p in chain.problems}
    assert (
        by_reason[nucleic.DNA_NUCLEOTIDE].residue_number == dna
        and by_reason[nucleic.DNA_NUCLEOTIDE].position == -1
    )
    assert by_reason[nucleic.BASE_NOT_BONDED].residue_number == u
    assert not chain.atom_mask[pos[u], RNA_ATOMS.index("N")]
    same = [k for k in range(12) if k != RNA_ATOMS.index("N")]
    assert np.array_equal(chain.atoms[:, same], base.atoms[keep][:, same])
    assert chain.chain_breaks == base.chain_breaks + 2  # both removed nucleotides break the O3'-P chain
    assert (
        nucleic.rna_parent("PSU") == "U"
        and nucleic.rna_parent("DG") == "DNA"
        and nucleic.rna_parent("HOH") is None
    )


def test_mmcif_gives_the_same_chain(rna_dir: Path, tmp_path: Path) -> None:
    """The same structure written as gzipped mmCIF (biotite) reads identically."""
    import biotite.structure.io.pdb as biotite_pdb
    import biotite.structure.io.pdbx as biotite_pdbx

    src = rna_dir / "rnapuzzles__10_solution1__B.pdb.gz"
    array = biotite_pdb.PDBFile.read(StringIO(gzip.decompress(src.read_bytes()).decode())).get_structure(
        model=1
    )
    cif = biotite_pdbx.CIFFile()
    biotite_pdbx.set_structure(cif, array)
    plain = tmp_path / "x.cif"
    cif.write(str(plain))
    packed = tmp_path / "x.cif.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = _one(src), _one(packed)
    assert a.sequence == b.sequence and np.array_equal(a.atom_mask, b.atom_mask)
    assert np.allclose(a.atoms, b.atoms, atol=1e-3)
    assert np.array_equal(a.residue_numbers, b.residue_numbers) and np.array_equal(
        a.break_after, b.break_after
    )


def test_bad_files_raise_with_a_reason(core_data: Path, core_rna_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdb"
    empty.write_bytes(b"")
    truncated = tmp_path / "cut.pdb.gz"
    truncated.write_bytes((core_rna_dir / "medium__1XJR__A.pdb.gz").read_bytes()[:500])
    protein = core_data / "pdb" / "ddg" / "1BPI.pdb"
    for path, reason in ((empty, EMPTY), (truncated, TRUNCATED_GZIP), (protein, nucleic.NO_RNA)):
        with pytest.raises(StructureReadError) as err:
            read_rna_chains(path)
        assert err.value.reason == reason, (path, err.value)
