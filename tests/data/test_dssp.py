"""DSSP three-state assignment: agreement with mkdssp (when installed), invariances, masks, fractions."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from flowbb.data.preprocess import SHARD_VERSION, PreprocessParams
from flowbb.data.preprocess_checks import check_options
from flowbb.data.secondary_structure import DSSP_METHODS, assign_dssp, ss_fractions
from flowbb.data.structure_io.read import read_chains
from flowbb.data.structure_io.write import write_backbone_pdb

THREE_STATE = {"H": "H", "G": "H", "I": "H", "E": "E", "B": "E"}


def _mkdssp(path) -> dict[int, str]:
    out = path.with_suffix(".dssp")
    subprocess.run(
        ["mkdssp", "--output-format", "dssp", str(path), str(out)], check=True, capture_output=True
    )
    lines = out.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  #  RESIDUE"))
    return {int(line[5:10]): THREE_STATE.get(line[16], "-") for line in lines[start + 1 :] if line[13] != "!"}


@pytest.mark.skipif(
    shutil.which("mkdssp") is None, reason="reference mkdssp not installed (apt-get install dssp)"
)
def test_agrees_with_reference_mkdssp(ddg_files, db55_files, tmp_path):
    agree = total = 0
    for f in ddg_files[::25] + db55_files[::120]:
        for chain in read_chains(f).chains:
            if chain.modeled_length < 40:
                continue
            path = write_backbone_pdb(
                tmp_path / "c.pdb", chain.atoms, chain.sequence, atom_mask=chain.atom_mask
            )
            ref = _mkdssp(path)
            ss = assign_dssp(chain.atoms, chain.atom_mask, chain.sequence)
            for i in np.nonzero(chain.atom_mask.all(1))[0]:
                if i + 1 in ref:
                    agree += ss[i] == ref[i + 1]
                    total += 1
    assert total > 500 and agree / total > 0.995


def test_real_folds_invariance_and_masks(core_ddg_files):
    chain = next(read_chains(f).chains[0] for f in core_ddg_files if f.name == "107L.pdb")  # T4 lysozyme, helical
    ss = assign_dssp(chain.atoms, chain.atom_mask, chain.sequence)
    assert len(ss) == chain.length and set(ss) <= {"H", "E", "-"}
    fr = ss_fractions(ss)
    assert fr["helix_frac"] > 0.55 and 0.0 < fr["strand_frac"] < 0.2
    assert sum(fr.values()) == pytest.approx(1.0)
    # rigid motions do not change the assignment; torch input works
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = chain.atoms @ q.T + np.array([30.0, -5.0, 12.0])
    assert assign_dssp(torch.from_numpy(moved.astype(np.float32)), chain.atom_mask, chain.sequence) == ss
    # masked residues are coil and the rest is computed without them
    mask = chain.atom_mask.all(1).copy()
    mask[40:45] = False
    masked = assign_dssp(chain.atoms, mask, chain.sequence)
    assert masked[40:45] == "-----" and masked[:30] == ss[:30]
    # the pydssp backend broadly agrees
    other = assign_dssp(chain.atoms, chain.atom_mask, chain.sequence, method="pydssp")
    assert np.mean([a == b for a, b in zip(ss, other)]) > 0.9


def test_beta_protein_and_fraction_edge_cases(db55_files):
    fractions = []
    for f in db55_files[:12]:
        for chain in read_chains(f).chains:
            ss = assign_dssp(chain.atoms, chain.atom_mask, chain.sequence)
            fractions.append(ss_fractions(ss, chain.res_mask)["strand_frac"])
    assert max(fractions) > 0.35  # db55 holds beta-rich antibodies and proteases
    assert all(np.isnan(v) for v in ss_fractions("").values())
    assert ss_fractions("HHEE--", np.array([1, 1, 1, 1, 0, 0], bool)) == {
        "helix_frac": 0.5,
        "strand_frac": 0.5,
        "coil_frac": 0.0,
    }
    with pytest.raises(ValueError):
        assign_dssp(np.zeros((5, 3, 3)))


def test_method_names_and_the_former_name(core_ddg_files):
    """The method is named for what it is (``kabsch_sander``, the default); its former name ``flowbb`` still works
    with a FutureWarning naming the new one; an unknown name is one ValueError listing the known ones. Processed
    folders made under the former name keep their shard fingerprints."""
    chain = next(read_chains(f).chains[0] for f in core_ddg_files if f.name == "107L.pdb")
    ss = assign_dssp(chain.atoms, chain.atom_mask, chain.sequence)
    assert DSSP_METHODS == ("kabsch_sander", "pydssp")
    assert assign_dssp(chain.atoms, chain.atom_mask, chain.sequence, method="kabsch_sander") == ss
    with pytest.warns(FutureWarning, match="dssp_method=flowbb is deprecated.*dssp_method=kabsch_sander"):
        assert assign_dssp(chain.atoms, chain.atom_mask, chain.sequence, method="flowbb") == ss
    with pytest.warns(FutureWarning, match="kabsch_sander"):
        assert check_options(1, 40, "flowbb", 2) == (1, 40, "kabsch_sander", 2)
    with pytest.raises(ValueError, match="dssp_method=mkdssp: expected one of kabsch_sander, pydssp"):
        assign_dssp(chain.atoms, method="mkdssp")
    former = json.dumps({"dssp_method": "flowbb", "min_length": 40, "v": SHARD_VERSION}, sort_keys=True)
    assert PreprocessParams().key() == hashlib.sha1(former.encode()).hexdigest()[:16]
    assert PreprocessParams(dssp_method="pydssp").key() != PreprocessParams().key()
