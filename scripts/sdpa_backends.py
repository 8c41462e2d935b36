"""Which fused SDPA kernels take each model preset's attention calls (FlashIPA and the sequence transformer).

    python scripts/sdpa_backends.py --device cuda --lengths 512 4096 --dtype bf16 --out bench_results/sdpa.json

For every flash model preset (plus the cpu_small and compact-lifting variants) and length: the head widths of the
FlashIPA call (lifted, padded as flowbb pads them) and of the sequence transformer, and for each fused SDPA kernel
of the device (CPU: flash; CUDA: flash, memory-efficient, cuDNN) whether it runs a forward + backward pass on
tensors of those shapes with a key-padding mask. ``chosen`` is the first that runs, in PyTorch's priority order;
none means flowbb's attention raises (it never falls back to the quadratic math kernel silently).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"flash": {}, "small": {}, "tiny": {}, "cpu_small": {"seq_offset_freqs": 8, "seq_neighbors": 2},
            "flash_compact": {"attn_pair_channels": 40, "seq_offset_freqs": 8}}


def widths(name: str, overrides: dict) -> dict[str, tuple[int, int]]:
    """Heads and head width of the FlashIPA and sequence-transformer attention calls of a preset."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    preset = "small" if name == "cpu_small" else "flash" if name == "flash_compact" else name
    cfg = OmegaConf.load(REPO / "configs" / "model" / f"{preset}.yaml")
    model = instantiate(cfg, **overrides, num_blocks=1)
    ipa = model.blocks[0]["ipa"]
    d_model = model.cfg.c_s + model.cfg.c_skip
    return {"flash_ipa": (ipa.no_heads, max(ipa.lifted_widths())),
            "seq_transformer": (model.cfg.seq_tfmr_heads, d_model // model.cfg.seq_tfmr_heads)}


def probe(device: str, dtype, heads: int, width: int, length: int) -> dict[str, bool]:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    from flowbb.model.attention import FUSED_SDPA

    padded = (width + 7) // 8 * 8 if device == "cuda" else width
    q = torch.randn(1, heads, length, padded, device=device, dtype=dtype, requires_grad=True)
    mask = torch.ones(1, 1, 1, length, device=device, dtype=torch.bool)
    mask[..., length - 7:] = False
    result = {}
    for backend in FUSED_SDPA[device]:
        try:
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(q, q, q, attn_mask=mask).sum().backward()
            result[backend.name] = True
        except RuntimeError:
            result[backend.name] = False
    return result


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 4096])
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    rows = []
    for name, overrides in VARIANTS.items():
        for call, (heads, width) in widths(name, overrides).items():
            for length in args.lengths:
                ok = probe(args.device, dtype, heads, width, length)
                chosen = next((b for b, good in ok.items() if good), None)
                rows.append({"preset": name, "call": call, "heads": heads, "width": width, "length": length,
                             "device": args.device, "dtype": args.dtype, "kernels": ok, "chosen": chosen})
                print(f"{name:14s} {call:15s} H={heads:2d} width={width:3d} L={length:5d}: {chosen or 'NONE'} {ok}",
                      flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
