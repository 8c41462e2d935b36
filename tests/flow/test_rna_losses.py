"""RNA flow losses on real chains of ../shared/data/rna: zero at the truth, the t > 0.25 gate of the frame-atom,
pair-distance and torsion terms, the torsion term by hand, and invariance (float64) under random rigid motions,
with and without the RNA model in the loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from flowbb.data.nucleic import read_rna_chains
from flowbb.flow.config import FlowConfig, LossConfig
from flowbb.flow.interpolant import Interpolant
from flowbb.flow.losses import LOSS_TERMS, flow_losses
from flowbb.geometry import rna, so3
from flowbb.model.flow_model import FlowModel
from flowbb.molecules import MOLECULE_NAMES, get_molecule

FILES = ["grnade__RCSB__B.pdb.gz", "rna3dbench__6JQ5_clean_fixed__A.pdb.gz", "medium__1XJR__A.pdb.gz"]
CFG = FlowConfig(losses=LossConfig(aux_t_threshold=0.25))
TERMS = (*LOSS_TERMS, "torsion", "total")
REPO = Path(__file__).resolve().parents[2]


def rna_batch(shared_data: Path, lengths: list[int], t_values: list[float], seed: int = 0) -> dict:
    """Crops of real RNA chains, padded, centred on C4', cleaned by the RNA molecule type and corrupted at t."""
    b, l = len(lengths), max(lengths)
    atoms = torch.zeros(b, l, 12, 3, dtype=torch.float64)
    atom_mask = torch.zeros(b, l, 12, dtype=torch.float64)
    for i, (name, n) in enumerate(zip(FILES, lengths)):
        (chain,) = read_rna_chains(shared_data / "rna" / name)
        keep = chain.res_mask
        x = torch.as_tensor(chain.atoms[keep][:n], dtype=torch.float64)
        m = torch.as_tensor(chain.atom_mask[keep][:n], dtype=torch.float64)
        atoms[i, :n] = (x - x[:, 0].mean(0)) * m[..., None]
        atom_mask[i, :n] = m
    res_mask = atom_mask[..., 0].clone()
    residue_index = torch.arange(l).expand(b, l).clone()
    batch = get_molecule("rna").clean(atoms, atom_mask, res_mask, residue_index)
    batch.update(atoms=atoms, atom_mask=atom_mask, res_mask=res_mask, residue_index=residue_index,
                 molecule=torch.full((b,), MOLECULE_NAMES.index("rna")))
    t = torch.tensor(t_values, dtype=torch.float64)
    return Interpolant(CFG).corrupt(batch, torch.Generator().manual_seed(seed), t=t)


def _perturbed(batch: dict, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    b, l = batch["res_mask"].shape
    m = batch["res_mask"][..., None]
    tors = batch["torsions_1"] + 0.3 * torch.randn(b, l, 8, 2, generator=g, dtype=torch.float64)
    return {
        "pred_rots": batch["rots_1"] @ so3.exp(0.2 * torch.randn(b, l, 3, generator=g, dtype=torch.float64)),
        "pred_trans": batch["trans_1"] + torch.randn(b, l, 3, generator=g, dtype=torch.float64) * m,
        "pred_torsions": tors / tors.norm(dim=-1, keepdim=True) * m[..., None],
    }


def _moved(batch: dict, out: dict, seed: int) -> tuple[dict, dict]:
    """Truth, path point and prediction under one random rigid motion (x -> Q x + v, R -> Q R)."""
    g = torch.Generator().manual_seed(seed)
    q = so3.sample_uniform((), generator=g, dtype=torch.float64)
    v = 20.0 * torch.randn(3, generator=g, dtype=torch.float64)
    m = batch["res_mask"][..., None]
    moved = dict(batch, rots_1=q @ batch["rots_1"], rots_t=q @ batch["rots_t"],
                 trans_1=(batch["trans_1"] @ q.T + v) * m, trans_t=(batch["trans_t"] @ q.T + v) * m)
    out_m = dict(out, pred_rots=q @ out["pred_rots"], pred_trans=(out["pred_trans"] @ q.T + v) * m)
    return moved, out_m


def test_zero_at_truth_and_terms_gated_at_quarter_t(shared_data):
    batch = rna_batch(shared_data, [60, 50, 45], [0.2, 0.5, 0.9])
    truth = {"pred_rots": batch["rots_1"], "pred_trans": batch["trans_1"], "pred_torsions": batch["torsions_1"]}
    losses = flow_losses(batch, truth, CFG)
    assert set(losses) == set(TERMS)
    for k in TERMS:
        assert losses[k].abs().item() < 1e-12, k
    _, per = flow_losses(batch, _perturbed(batch), CFG, return_per_sample=True)
    for k in ("bb_atom", "pair_dist", "torsion"):
        assert per[k][0] == 0 and (per[k][1:] > 1e-4).all(), k
    assert (per["trans"] > 1e-4).all() and (per["rot"] > 1e-4).all()
    w = {"trans": 2.0, "rot": 1.0, "bb_atom": 0.25, "pair_dist": 0.25, "torsion": 1.0}
    torch.testing.assert_close(per["total"], sum(w[k] * per[k] for k in w))


def test_torsion_and_frame_atom_terms_by_hand(shared_data):
    batch = rna_batch(shared_data, [40], [0.6])
    out = _perturbed(batch, seed=2)
    _, per = flow_losses(batch, out, CFG, return_per_sample=True)
    mask = batch["torsion_mask"][0]
    assert mask.float().mean() > 0.9  # real chains: most torsions are defined
    diff = (batch["torsions_1"][0] - out["pred_torsions"][0])[mask]
    assert per["torsion"][0].item() == pytest.approx(float((diff**2).sum(-1).mean()), rel=1e-12)
    scale = 0.1 / (1 - 0.6)
    true = rna.atoms_from_frames(batch["rots_1"], batch["trans_1"], batch["torsions_1"])[0, :, :3]
    pred = rna.atoms_from_frames(out["pred_rots"], out["pred_trans"], out["pred_torsions"])[0, :, :3]
    expected = float((((true - pred) * scale) ** 2).sum(-1).mean() / 3.0)
    assert per["bb_atom"][0].item() == pytest.approx(expected, rel=1e-10)


def test_losses_invariant_under_rigid_motions(shared_data):
    batch = rna_batch(shared_data, [60, 50, 45], [0.3, 0.7, 0.95], seed=3)
    out = _perturbed(batch, seed=4)
    _, per = flow_losses(batch, out, CFG, return_per_sample=True)
    for seed in (5, 6):
        moved, out_m = _moved(batch, out, seed)
        _, per_m = flow_losses(moved, out_m, CFG, return_per_sample=True)
        for k in TERMS:
            torch.testing.assert_close(per_m[k], per[k], rtol=1e-10, atol=1e-12, msg=k)


def test_model_and_losses_invariant_under_rigid_motions(shared_data):
    """The tiny RNA model (num_torsions 8) in the loop, float64: moving the input moves the prediction and leaves
    every loss term unchanged."""
    cfg = OmegaConf.load(REPO / "configs" / "model" / "tiny.yaml")
    torch.manual_seed(0)
    model = FlowModel(**{k: v for k, v in cfg.items() if k != "_target_"}, num_torsions=8, seq_neighbors=2).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    batch = rna_batch(shared_data, [60, 50, 45], [0.3, 0.7, 0.95], seed=7)

    def run(b: dict) -> dict:
        inputs = {k: b[k] for k in ("rots_t", "trans_t", "t", "res_mask", "residue_index")}
        out = model(inputs)
        return flow_losses(b, out, CFG, return_per_sample=True)[1]

    per = run(batch)
    assert all(per[k].min() > 0 for k in ("trans", "rot", "torsion"))
    moved, _ = _moved(batch, {"pred_rots": batch["rots_1"], "pred_trans": batch["trans_1"]}, seed=8)
    per_m = run(moved)
    for k in TERMS:
        torch.testing.assert_close(per_m[k], per[k], rtol=1e-9, atol=1e-12, msg=k)


def test_protein_prediction_on_rna_batch_is_named(shared_data):
    batch = rna_batch(shared_data, [40], [0.5])
    out = {"pred_rots": batch["rots_1"], "pred_trans": batch["trans_1"], "pred_psi": torch.zeros(1, 40)}
    with pytest.raises(KeyError, match="pred_torsions"):
        flow_losses(batch, out, CFG)
    out["pred_torsions"] = torch.zeros(1, 40, 1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="num_torsions=8"):
        flow_losses(batch, out, CFG)
