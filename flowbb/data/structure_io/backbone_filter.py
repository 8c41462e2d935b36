"""Text-level pre-filters: only the backbone atom lines of the first model go on to biotite.

biotite's parsers spend their time per atom line (PDB) or ``atom_site`` row (mmCIF); handing them only the (at most
5 per residue) backbone atoms of model 1 makes parsing several times faster with the same N/CA/C/O result.
"""

from __future__ import annotations

from flowbb.data.residues import BACKBONE_ATOMS

#: atom names kept: N, CA, C, O and the CHARMM-style terminal oxygens read when O is absent
_BACKBONE_NAMES = frozenset(BACKBONE_ATOMS) | {"OT1", "O1"}


def first_model_backbone_cif(text: str) -> str:
    """mmCIF text with the ``atom_site`` loop cut to backbone atoms of the first model (else unchanged).

    Same idea as :func:`first_model_backbone_lines`: biotite's CIF tokenizer spends its time on the atom_site rows. Rows are
    filtered only when the loop has one row per line with as many whitespace-separated tokens as columns
    (as wwPDB files do); anything unusual leaves the text untouched.
    """
    start = text.find("\nloop_\n_atom_site.")
    if start < 0:
        return text
    lines = text[start + 1 :].split("\n")
    columns = []
    i = 1
    while i < len(lines) and lines[i].startswith("_atom_site."):
        columns.append(lines[i].strip()[len("_atom_site.") :])
        i += 1
    name_col = "label_atom_id" if "label_atom_id" in columns else "auth_atom_id"
    if name_col not in columns:
        return text
    name_at = columns.index(name_col)
    model_at = columns.index("pdbx_PDB_model_num") if "pdbx_PDB_model_num" in columns else None
    kept, first_model, end = [], None, i
    names = _BACKBONE_NAMES
    while end < len(lines):
        line = lines[end]
        if not line or line[0] in "#_" or line.startswith(("loop_", "data_")):
            break
        tokens = line.split()
        if len(tokens) != len(columns):
            return text
        if model_at is not None:
            first_model = tokens[model_at] if first_model is None else first_model
            if tokens[model_at] != first_model:
                end += 1
                continue
        if tokens[name_at].strip("\"'") in names:
            kept.append(line)
        end += 1
    if not kept:
        return text
    return text[: start + 1] + "\n".join(lines[:i] + kept + lines[end:])


def first_model_backbone_lines(lines: list[str]) -> list[str]:
    """ATOM/HETATM lines of backbone atom names up to the end of the first model.

    biotite's PDB parser spends its time per atom line; handing it only the (at most 5 per residue)
    backbone lines of model 1 makes parsing several times faster with the same result for N/CA/C/O.
    Residues without any backbone atom are thereby dropped; they carry no backbone information.
    """
    out = []
    names = _BACKBONE_NAMES
    for line in lines:
        record = line[:6]
        if record == "ATOM  " or record == "HETATM":
            if line[12:16].strip() in names:
                out.append(line)
        elif record == "ENDMDL":
            break
    return out
