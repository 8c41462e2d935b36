"""Amino-acid residue names: the 20 standard residues and modified residues mapped to their parent.

The modified-residue table covers the chemically modified amino acids that occur most often in the PDB
(selenomethionine, phosphorylations, methylations, oxidised cysteines, ...) and the residue names that
molecular-dynamics force fields use for protonation states (HSD/HIE/CYX/...). Each maps to the parent's
one-letter code, as the PDB's ``_chem_comp.mon_nstd_parent_comp_id`` does.
"""

from __future__ import annotations

STANDARD_THREE_TO_ONE: dict[str, str] = {
    "ALA": "A",
    "ARG": "R",
    "ASN": "N",
    "ASP": "D",
    "CYS": "C",
    "GLN": "Q",
    "GLU": "E",
    "GLY": "G",
    "HIS": "H",
    "ILE": "I",
    "LEU": "L",
    "LYS": "K",
    "MET": "M",
    "PHE": "F",
    "PRO": "P",
    "SER": "S",
    "THR": "T",
    "TRP": "W",
    "TYR": "Y",
    "VAL": "V",
}

ONE_TO_THREE: dict[str, str] = {v: k for k, v in STANDARD_THREE_TO_ONE.items()}

#: modified / non-canonical residue name -> parent one-letter code
MODIFIED_TO_PARENT: dict[str, str] = {
    # selenium / sulfur
    "MSE": "M",
    "SEC": "C",
    "CSO": "C",
    "CSD": "C",
    "CSS": "C",
    "CME": "C",
    "OCS": "C",
    "CSX": "C",
    "CAS": "C",
    "CYG": "C",
    "SMC": "C",
    "SNC": "C",
    "CSW": "C",
    "CXM": "M",
    "FME": "M",
    "MHO": "M",
    # phosphorylation
    "SEP": "S",
    "TPO": "T",
    "PTR": "Y",
    "NEP": "H",
    "HIP": "H",
    # hydroxylation / oxidation
    "HYP": "P",
    "HY3": "P",
    "LYZ": "K",
    "TYS": "Y",
    "TRO": "W",
    "HTR": "W",
    # methylation / acetylation / other lysine modifications
    "MLY": "K",
    "MLZ": "K",
    "M3L": "K",
    "ALY": "K",
    "KCX": "K",
    "LLP": "K",
    "KPI": "K",
    "PYL": "K",
    "MEN": "N",
    "AGM": "R",
    "2MR": "R",
    "DA2": "R",
    "MEA": "F",
    "HIC": "H",
    # cyclisation / carboxylation / amidation
    "PCA": "E",
    "CGU": "E",
    "GLZ": "G",
    "SAR": "G",
    "AIB": "A",
    "SAC": "S",
    "OAS": "S",
    "ABA": "A",
    "NLE": "L",
    "NVA": "V",
    "MVA": "V",
    "BMT": "T",
    "IAS": "D",
    "BFD": "D",
    "PHD": "D",
    "CCS": "C",
    # molecular-dynamics protonation-state names
    "HSD": "H",
    "HSE": "H",
    "HSP": "H",
    "HID": "H",
    "HIE": "H",
    "HISD": "H",
    "HISE": "H",
    "HISH": "H",
    "HIS1": "H",
    "HIS2": "H",
    "CYX": "C",
    "CYM": "C",
    "CYS2": "C",
    "ASH": "D",
    "ASPH": "D",
    "GLH": "E",
    "GLUH": "E",
    "LYN": "K",
    "LYSH": "K",
    "ARN": "R",
    # D-amino acids (same backbone atoms; parent one-letter code)
    "DAL": "A",
    "DAR": "R",
    "DSG": "N",
    "DAS": "D",
    "DCY": "C",
    "DGN": "Q",
    "DGL": "E",
    "DHI": "H",
    "DIL": "I",
    "DLE": "L",
    "DLY": "K",
    "MED": "M",
    "DPN": "F",
    "DPR": "P",
    "DSN": "S",
    "DTH": "T",
    "DTR": "W",
    "DTY": "Y",
    "DVA": "V",
    # unknown amino acid
    "UNK": "X",
}

THREE_TO_ONE: dict[str, str] = {**STANDARD_THREE_TO_ONE, **MODIFIED_TO_PARENT}

#: backbone atom names in the order of the atom axis of ``atoms [L, 4, 3]``
BACKBONE_ATOMS: tuple[str, str, str, str] = ("N", "CA", "C", "O")


def one_letter(res_name: str) -> str | None:
    """One-letter code for an amino-acid residue name (parent for modified ones), or None if not one."""
    return THREE_TO_ONE.get(res_name.strip().upper())
