"""Header facts of structure files: resolution, experimental method, deposition date, PDB id, oligomeric state.

PDB: ``HEADER``, ``EXPDTA``, ``REMARK 2``, ``REMARK 350`` and the ``COMPND`` chain -> entity map; mmCIF:
``refine``/``reflns``/``em_3d_reconstruction``, ``exptl``, ``pdbx_database_status``, ``entry``,
``pdbx_struct_assembly``. Each function returns a dict holding only the facts the file states.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_RESOLUTION_RE = re.compile(r"RESOLUTION\.\s+([0-9.]+)\s+ANGSTROM")


def _pdb_date(text: str) -> str | None:
    """``DD-MON-YY`` (PDB HEADER) -> ``YYYY-MM-DD``; None when not a date."""
    match = re.fullmatch(r"(\d{2})-([A-Z]{3})-(\d{2})", text.strip())
    if not match or match.group(2) not in _MONTHS:
        return None
    year = int(match.group(3))
    year += 1900 if year >= 70 else 2000
    return f"{year:04d}-{_MONTHS[match.group(2)]:02d}-{int(match.group(1)):02d}"


def pdb_header(lines: Sequence[str]) -> dict[str, Any]:
    """Facts of the records before the first ATOM/HETATM/MODEL line of a PDB file.

    Returns:
        dict with ``resolution``, ``method``, ``deposition_date``, ``pdb_id``, ``oligomeric_detail`` where the file
        states them, and always ``entity_of_chain`` (author chain id -> ``COMPND MOL_ID``, empty when none).
    """
    facts: dict[str, Any] = {}
    methods: list[str] = []
    entity_chains: dict[str, str] = {}
    mol_id: str | None = None
    for line in lines:
        record = line[:6]
        if record in ("ATOM  ", "HETATM", "MODEL "):
            break
        if record == "HEADER":
            facts["deposition_date"] = _pdb_date(line[50:59])
            pdb_id = line[62:66].strip()
            facts["pdb_id"] = pdb_id.upper() or None
        elif record == "EXPDTA":
            methods.extend(m.strip() for m in line[10:].split(";") if m.strip())
        elif record == "REMARK":
            if line[6:10] == "   2" and "RESOLUTION." in line:
                match = _RESOLUTION_RE.search(line)
                if match:
                    try:
                        facts["resolution"] = float(match.group(1))
                    except ValueError:
                        pass
            elif line[6:10] == " 350" and "oligomeric_detail" not in facts and "BIOLOGICAL UNIT:" in line:
                facts["oligomeric_detail"] = line.split("BIOLOGICAL UNIT:")[1].strip().lower() or None
        elif record == "COMPND":
            text = line[10:].strip()
            if text.startswith("MOL_ID:"):
                mol_id = text[7:].strip(" ;")
            elif text.startswith("CHAIN:") and mol_id is not None:
                for chain in text[6:].strip(" ;").split(","):
                    entity_chains[chain.strip()] = mol_id
    if methods:
        facts["method"] = "; ".join(methods)
    facts["entity_of_chain"] = entity_chains
    return facts


def _cif_values(block: Any, category: str, key: str) -> list[str]:
    """The stated values of ``category.key`` of a CIF block ('?' and '.' dropped)."""
    if category not in block or key not in block[category]:
        return []
    values = block[category][key].as_array(str)
    return [v for v in (str(x).strip() for x in values) if v and v not in ("?", ".")]


def cif_header(block: Any) -> dict[str, Any]:
    """Facts of an mmCIF / BinaryCIF block (biotite ``CIFBlock``/``BinaryCIFBlock``): ``resolution``, ``method``,
    ``deposition_date``, ``pdb_id``, ``oligomeric_detail`` where the file states them."""
    facts: dict[str, Any] = {}
    for category, key in (
        ("refine", "ls_d_res_high"),
        ("reflns", "d_resolution_high"),
        ("em_3d_reconstruction", "resolution"),
    ):
        for value in _cif_values(block, category, key):
            try:
                facts["resolution"] = float(value)
                break
            except ValueError:
                continue
        if "resolution" in facts:
            break
    methods = _cif_values(block, "exptl", "method")
    if methods:
        facts["method"] = "; ".join(methods)
    dates = _cif_values(block, "pdbx_database_status", "recvd_initial_deposition_date")
    if dates:
        facts["deposition_date"] = dates[0]
    ids = _cif_values(block, "entry", "id")
    if ids:
        facts["pdb_id"] = ids[0].upper()
    oligo = _cif_values(block, "pdbx_struct_assembly", "oligomeric_details")
    if oligo:
        facts["oligomeric_detail"] = oligo[0].lower()
    return facts
