"""Generate backbones into PDB files: lengths x samples_per_length, batched under a token budget (no Lightning).

The one generation path of flowbb: the sampler CLI (``scripts/sample.py``), the notebook, the benchmarks and the
validation callback (:class:`flowbb.training.callbacks.SampleValidation`, one folder per validation step) all call
:func:`generate` (or :func:`sample_batch`, its batch step), so they share seeds, batching and file names.

Output layout (``out_dir``)::

    length_<L>/sample_<i>.pdb             the atoms of every residue, chain A, residues 1..L: proteins N, CA, C, O
                                          (poly-GLY); RNA the 12 rebuilt atoms (C4' ... OP2, base N9/N1; all N
                                          or the chosen nucleotide), by the checkpoint's molecule type
    length_<L>/sample_<i>_traj.pdb        (save_traj) x_t at every grid time: num_steps + 1 models
    length_<L>/sample_<i>_pred_traj.pdb   (save_traj) the clean prediction at every grid time: num_steps + 1 models
    samples.csv                           one row per sample (see :data:`CSV_COLUMNS`)

Batching: the samples of one length are cut into batches of ``max(1, max_tokens // L)`` (equal lengths, so no
padding); lengths never share a batch.

Seeds and repeatability: sample ``i`` of length ``L`` gets its own seed ``sample_seed(seed, L, i)`` (a NumPy
``SeedSequence`` hash of the three numbers), and its prior (uniform rotations, Gaussian translations) is drawn from
a CPU ``torch.Generator`` seeded with it, on its own. With ``noise_scale = 0`` (the default ODE sampler) that prior is
all the randomness, so a sample depends only on (checkpoint, seed, L, i, settings): the same seed gives identical
files, and changing ``max_tokens`` (the batching) or the other lengths requested leaves every sample's prior
unchanged; the coordinates then agree up to float rounding of batched matrix products (far below the 1e-3 Å of
the PDB format, see the tests), not necessarily bit for bit. With ``noise_scale > 0`` the stochastic term of each
batch is drawn from a generator seeded with the batch's first sample seed, so those samples repeat exactly for the
same seed *and* the same batching (``max_tokens``). Priors are drawn on the CPU, so they do not depend on the device.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from flowbb.data.packing import BatchBudget, pack_batches
from flowbb.flow.config import FlowConfig, SamplerConfig
from flowbb.flow.interpolant import Interpolant
from flowbb.flow.sampler import ModelFn, res_mask_from_lengths, resolve_sampler, sample
from flowbb.inference.checkpoint import load_checkpoint
from flowbb.molecules import get_molecule
from flowbb.molecules.base import Molecule

Tensor = torch.Tensor

CSV_NAME = "samples.csv"
CSV_COLUMNS = (
    "path", "length", "sample_index", "seed", "seconds", "checkpoint", "weights", "num_steps", "rot_rate",
    "noise_scale", "self_condition", "clash_guidance", "clash_guidance_min_t", "langevin_rate", "temperature",
    "max_tokens", "batch_size", "device", "traj_path", "pred_traj_path",
)
_OWN_FILE = re.compile(r"^sample_\d+(_traj|_pred_traj)?\.pdb$")


@dataclasses.dataclass
class SamplingSettings:
    """Sampler settings; ``None`` takes the checkpoint's flow config value (its ``sampler`` group).

    Attributes:
        num_steps: Euler steps from min_t to 1 (the model runs num_steps + 1 times).
        rot_rate: rate of the exp rotation schedule.
        noise_scale: stochastic term (0: deterministic ODE).
        self_condition: feed the previous clean translation prediction back.
        clash_guidance: fraction of each trace-atom overlap of the clean prediction removed per step (0: off).
        clash_guidance_min_t: the guidance acts at t >= this.
        langevin_rate: rate of the low-temperature Langevin term on translations (0: off).
        temperature: its noise level (1 keeps the flow's marginals, 0 is the drift alone).
        max_tokens: batch budget, batch size ``max(1, max_tokens // L)``.
        save_traj: also write the x_t and clean-prediction trajectories.
    """

    num_steps: int | None = 100
    rot_rate: float | None = None
    noise_scale: float | None = None
    self_condition: bool | None = None
    clash_guidance: float | None = None
    clash_guidance_min_t: float | None = None
    langevin_rate: float | None = None
    temperature: float | None = None
    max_tokens: int = 4096
    save_traj: bool = False

    def sampler_overrides(self) -> dict:
        """The sampler keys (those of :class:`flowbb.flow.config.SamplerConfig`), ``None`` where not set."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(SamplerConfig)}

    def resolved(self, flow_cfg: FlowConfig) -> SamplingSettings:
        """A copy with every ``None`` replaced by the flow config's sampler default (``flow_cfg.sampler``), checked."""
        sampler = resolve_sampler(flow_cfg.sampler, **self.sampler_overrides())  # checked by SamplerConfig
        s = SamplingSettings(**dataclasses.asdict(sampler), max_tokens=int(self.max_tokens),
                             save_traj=bool(self.save_traj))
        if s.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {s.max_tokens}")
        return s


@dataclasses.dataclass
class SampleBatch:
    """One batch of the plan: ``indices`` of samples of one ``length``."""

    length: int
    indices: list[int]


@dataclasses.dataclass
class GeneratedSample:
    """One written sample: its file, seed, timing and coordinates ``atoms [L, A, 3]`` (float32, Å; A = 4 for
    proteins (N, CA, C, O), 12 for RNA (:data:`flowbb.geometry.rna.ATOM_ORDER`))."""

    path: Path
    length: int
    index: int
    seed: int
    seconds: float
    atoms: np.ndarray
    traj_path: Path | None = None
    pred_traj_path: Path | None = None


def sample_seed(seed: int, length: int, index: int) -> int:
    """The seed of sample ``index`` of length ``length`` in a run seeded with ``seed`` (a 63-bit int).

    Independent of batching and of the other lengths requested.
    """
    if seed < 0 or length < 1 or index < 0:
        raise ValueError(f"sample_seed: need seed >= 0, length >= 1, index >= 0; got {seed}, {length}, {index}")
    state = np.random.SeedSequence([int(seed), int(length), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) & (2**63 - 1))


def check_lengths(lengths: Sequence[int] | int) -> list[int]:
    """``lengths`` as a list of ints >= 1 (a single int is one length); ``ValueError`` naming the bad entry."""
    if isinstance(lengths, (int, np.integer)) and not isinstance(lengths, bool):
        lengths = [int(lengths)]
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence | np.ndarray):
        raise ValueError(f"lengths: expected an int or a list of ints, got {lengths!r}")  # noqa: TRY004 (CLI input)
    out = []
    for n in lengths:
        if isinstance(n, (bool, str)) or not isinstance(n, (int, float, np.number)) or int(n) != n or int(n) < 1:
            raise ValueError(f"lengths: every length must be an integer >= 1, got {n!r} in {list(lengths)}")
        out.append(int(n))
    if not out:
        raise ValueError("lengths: need at least one length")
    return out


def plan_batches(lengths: Sequence[int], samples_per_length: int, max_tokens: int) -> list[SampleBatch]:
    """Equal-length batches of at most ``max(1, max_tokens // L)`` samples, in the order of ``lengths``: the shared
    token-budget packer (:func:`flowbb.data.packing.pack_batches`, ``same_length``) over the samples listed length
    by length.

    A length listed twice is sampled once (``samples_per_length`` samples).
    """
    if samples_per_length < 1:
        raise ValueError(f"samples_per_length must be >= 1, got {samples_per_length}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    items = [n for n in dict.fromkeys(check_lengths(lengths)) for _ in range(samples_per_length)]
    batches = pack_batches(items, BatchBudget(max_tokens=max_tokens), order=range(len(items)), same_length=True)
    return [SampleBatch(items[b[0]], [i % samples_per_length for i in b]) for b in batches]


def prepare_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Create ``out_dir``; a non-empty one is refused unless ``overwrite``.

    With ``overwrite`` the files of an earlier run (``samples.csv``, ``length_*/sample_*.pdb``) are removed first
    (other files are left alone), so that the folder never mixes two runs.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false (or it is a file).
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"out_dir {out} is not empty; choose another out_dir or pass overwrite=true")
        (out / CSV_NAME).unlink(missing_ok=True)
        for sub in out.glob("length_*"):
            if sub.is_dir():
                for f in sub.iterdir():
                    if f.is_file() and _OWN_FILE.match(f.name):
                        f.unlink()
                if not any(sub.iterdir()):
                    shutil.rmtree(sub)
    out.mkdir(parents=True, exist_ok=True)
    return out


def draw_priors(flow_cfg: FlowConfig, length: int, seeds: Sequence[int],
                device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Prior frames of ``len(seeds)`` chains of ``length`` residues, each from its own CPU generator.

    Returns:
        rots_0 ``[B, L, 3, 3]``, trans_0 ``[B, L, 3]`` (Å), on ``device``.
    """
    interpolant = Interpolant(flow_cfg)
    mask = torch.ones(1, length)
    rots, trans = [], []
    for s in seeds:
        r, t = interpolant.sample_prior(mask, torch.Generator().manual_seed(int(s)))
        rots.append(r)
        trans.append(t)
    return torch.cat(rots).to(device), torch.cat(trans).to(device)


def sample_batch(model_fn: ModelFn, flow_cfg: FlowConfig, length: int, seeds: Sequence[int],
                 settings: SamplingSettings, device: torch.device | str = "cpu",
                 molecule: Molecule | str = "protein") -> dict[str, Tensor]:
    """Sample ``len(seeds)`` backbones of ``length`` residues in one batch (per-sample priors, see module doc).

    Returns:
        the dict of :func:`flowbb.flow.sampler.sample` (``atoms [B, L, A, 3]`` of the molecule type etc.,
        trajectories with ``settings.save_traj``).
    """
    s = settings.resolved(flow_cfg)
    device = torch.device(device)
    prior = draw_priors(flow_cfg, length, seeds, device)
    noise_gen = torch.Generator().manual_seed(int(seeds[0]) ^ 0x5DEECE66D)
    mask = res_mask_from_lengths([length] * len(seeds), device=device)
    return sample(model_fn, mask, flow_cfg, **s.sampler_overrides(), generator=noise_gen, save_traj=s.save_traj,
                  prior=prior, molecule=molecule)


def stack_atoms(samples: Sequence[GeneratedSample]) -> tuple[Tensor, Tensor]:
    """The atoms of ``samples`` as one zero-padded batch, in their order (what the geometry metrics take).

    Args:
        samples: ``B`` generated samples, each with ``atoms [L_b, A, 3]`` (one molecule type, so one ``A``).
    Returns:
        ``atoms [B, L_max, A, 3]`` (float32, Å, zeros past each length) and ``res_mask [B, L_max]`` (float32).
    """
    if not samples:
        raise ValueError("stack_atoms: no samples")
    l_max = max(s.length for s in samples)
    atoms = torch.zeros(len(samples), l_max, *samples[0].atoms.shape[1:])
    mask = torch.zeros(len(samples), l_max)
    for b, s in enumerate(samples):
        atoms[b, : s.length] = torch.from_numpy(np.asarray(s.atoms, dtype=np.float32))
        mask[b, : s.length] = 1.0
    return atoms, mask


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(
    model_fn: ModelFn,
    flow_cfg: FlowConfig,
    lengths: Sequence[int] | int,
    samples_per_length: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    settings: SamplingSettings | None = None,
    device: torch.device | str = "cpu",
    checkpoint: str = "",
    weights: str = "",
    overwrite: bool = False,
    on_batch: Callable[[SampleBatch, float], None] | None = None,
    molecule: Molecule | str = "protein",
    residue_name: str | None = None,
) -> list[GeneratedSample]:
    """Sample ``samples_per_length`` backbones of every length and write them under ``out_dir``.

    Args:
        model_fn: ``model_fn(batch) -> {pred_rots, pred_trans, pred_psi / pred_torsions}`` (a FlowModel in eval mode
            on ``device``).
        flow_cfg: the flow config of the model (prior scale, min_t, sampler defaults).
        lengths: chain lengths (a length listed twice is sampled once).
        samples_per_length: samples per length.
        out_dir: output folder (created; a non-empty one needs ``overwrite``).
        seed: run seed (>= 0); sample seeds derive from it (see :func:`sample_seed`).
        settings: sampler settings (default :class:`SamplingSettings`).
        device: where the model runs.
        checkpoint, weights: recorded in ``samples.csv`` (checkpoint path, ``ema``/``raw``).
        overwrite: allow a non-empty ``out_dir`` (an earlier run's samples are removed).
        on_batch: called after each batch with the batch and its seconds (progress bars).
        molecule: the molecule type the model generates (:func:`flowbb.molecules.molecule_of_config` of its
            training config): the torsions read, the atoms rebuilt, the PDB layout.
        residue_name: one residue name for every residue in the PDB files (None: the molecule's default, GLY for
            proteins, N for RNA; RNA takes A, C, G, U or N).
    Returns:
        one :class:`GeneratedSample` per sample, in the order of ``lengths`` then index; ``samples.csv`` holds the
        same rows (columns :data:`CSV_COLUMNS`; ``seconds`` is the batch time divided by the batch size).
    """
    s = (settings or SamplingSettings()).resolved(flow_cfg)
    mol = get_molecule(molecule) if isinstance(molecule, str) else molecule
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    device = torch.device(device)
    plan = plan_batches(lengths, samples_per_length, s.max_tokens)
    out = prepare_out_dir(out_dir, overwrite)

    results: list[GeneratedSample] = []
    csv_path = out / CSV_NAME
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for batch in plan:
            n = batch.length
            seeds = [sample_seed(int(seed), n, i) for i in batch.indices]
            _sync(device)
            t0 = time.perf_counter()
            res = sample_batch(model_fn, flow_cfg, n, seeds, s, device, molecule=mol)
            _sync(device)
            seconds = time.perf_counter() - t0
            atoms = res["atoms"].detach().float().cpu()
            if not torch.isfinite(atoms).all():
                raise FloatingPointError(f"sampling length {n} (samples {batch.indices}) produced non-finite "
                                         "coordinates")
            sub = out / f"length_{n}"
            for row, (i, sd) in enumerate(zip(batch.indices, seeds, strict=True)):
                path = mol.write_pdb(sub / f"sample_{i}.pdb", atoms[row].numpy(), residue_name, models=False)
                traj_path = pred_path = None
                if s.save_traj:
                    traj_path = mol.write_pdb(sub / f"sample_{i}_traj.pdb",
                                              res["traj_atoms"][:, row].float().cpu().numpy(), residue_name, models=True)
                    pred_path = mol.write_pdb(sub / f"sample_{i}_pred_traj.pdb",
                                              res["clean_traj_atoms"][:, row].float().cpu().numpy(), residue_name,
                                              models=True)
                item = GeneratedSample(path=path, length=n, index=i, seed=sd, seconds=seconds / len(seeds),
                                       atoms=atoms[row].numpy(), traj_path=traj_path, pred_traj_path=pred_path)
                results.append(item)
                writer.writerow({
                    "path": str(path), "length": n, "sample_index": i, "seed": sd,
                    "seconds": f"{item.seconds:.4f}", "checkpoint": checkpoint, "weights": weights,
                    **s.sampler_overrides(), "max_tokens": s.max_tokens, "batch_size": len(seeds),
                    "device": str(device), "traj_path": str(traj_path or ""), "pred_traj_path": str(pred_path or ""),
                })
            fh.flush()
            if on_batch is not None:
                on_batch(batch, seconds)
    return results


def generate_from_checkpoint(
    ckpt_path: str | Path,
    lengths: Sequence[int] | int,
    samples_per_length: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    settings: SamplingSettings | None = None,
    use_ema: bool = True,
    device: str | torch.device | None = "auto",
    overwrite: bool = False,
    on_batch: Callable[[SampleBatch, float], None] | None = None,
    trust: bool = False,
    residue_name: str | None = None,
) -> list[GeneratedSample]:
    """:func:`generate` with the network of a flowbb checkpoint (see :func:`flowbb.inference.checkpoint.load_checkpoint`;
    ``trust`` allows full unpickling of a checkpoint holding Python objects), for the molecule type of its training
    config."""
    loaded = load_checkpoint(ckpt_path, use_ema=use_ema, device=device, trust=trust)
    return generate(loaded.model_fn, loaded.flow_cfg, lengths, samples_per_length, out_dir, seed=seed,
                    settings=settings, device=loaded.device, checkpoint=str(loaded.path), weights=loaded.weights,
                    overwrite=overwrite, on_batch=on_batch, molecule=loaded.molecule, residue_name=residue_name)
