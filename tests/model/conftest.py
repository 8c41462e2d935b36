"""Helpers for the model tests: random frames, global rigid motions, shape recording."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode


def random_rotations(shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """Uniform-ish random proper rotations ``[*shape, 3, 3]`` (QR of Gaussian matrices, det +1)."""
    a = torch.randn(*shape, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]
    det = torch.linalg.det(q)
    q = torch.cat([q[..., :, :2], q[..., :, 2:] * det[..., None, None]], dim=-1)
    return q.to(dtype)


def chain_coords(
    B: int, L: int, dtype: torch.dtype, generator: torch.Generator, step: float = 3.8
) -> torch.Tensor:
    """Random-walk CA-like traces ``[B, L, 3]`` in Å (steps of about ``step`` Å, jittered by 5% so that
    no two neighbour distances tie exactly), centred."""
    d = torch.randn(B, L, 3, generator=generator, dtype=torch.float64)
    jitter = 1.0 + 0.05 * torch.randn(B, L, 1, generator=generator, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True) * step * jitter
    x = torch.cumsum(d, dim=1)
    return (x - x.mean(dim=1, keepdim=True)).to(dtype)


class ShapeRecorder(TorchDispatchMode):
    """Records the shapes of every tensor produced by an aten op while active."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append((str(func), tuple(t.shape)))
        return out


@pytest.fixture
def rot_fn() -> Callable[..., torch.Tensor]:
    return random_rotations


@pytest.fixture
def chain_fn() -> Callable[..., torch.Tensor]:
    return chain_coords


@pytest.fixture
def shape_recorder() -> type[ShapeRecorder]:
    return ShapeRecorder
