"""flowbb's SO(3) maps (``flowbb.geometry.so3``) against roma's, on accuracy, gradients and speed.

    python scripts/compare_rotations.py [--n 2000] [--batch 100000] [--reps 7] [--out bench_results/compare_rotations.json]

Functions compared (ours -> roma):

- ``exp``: flowbb's own Rodrigues with Taylor series below 1e-3 rad (:func:`former_exp`, so3.exp before it became
  roma's) -> ``roma.rotvec_to_rotmat``;
- ``log``: flowbb's own ``w / sin w * vee(R)``, axis from the symmetric part near pi (:func:`former_log`, so3.log
  before it became roma's) -> ``roma.rotmat_to_rotvec`` (via Markley's quaternion);
- ``dist``: ``so3.geodesic_distance`` -> ``roma.rotmat_geodesic_distance`` (2 asin(|R2 - R1|_F / 2 sqrt 2)) and
  ``roma.rotmat_geodesic_distance_naive`` (acos of the trace), as ``roma_naive``; and for speed only
  ``ours_matmul`` (``angle(R_a^T R_b)``, the former so3.geodesic_distance).

The former functions stay here as the record of what roma replaced (``tests/geometry/test_so3_vs_roma.py`` uses them).

Cases (rotation vectors w = angle * unit axis, built in float64): ``random`` (angle uniform in [0, pi]),
``near0`` (angle 10^U(-8, -3)), ``zero`` (w = 0), ``near_pi`` (angle pi - 10^U(-8, -3)), ``pi`` (angle pi).
References are independent of both libraries, all float64: ``R = torch.linalg.matrix_exp(hat(w))``; the log of R
is w (up to the sign of w at angle pi); the distance of ``R_a`` and ``R_a R`` is |w|. Each library then runs in
float32 and float64 on the rounded inputs. Errors are the largest absolute error over the batch (matrix entries for
exp, vector entries for log, radians for dist).

Gradients, taken the way the flow's losses see them (along the manifold; at angle ~pi, where the log jumps and the
distance has a kink, against the one-sided derivative of the branch returned):

- exp: d/dw of ``sum(exp(w) * G)``, reference: the same through ``matrix_exp`` in float64;
- log: d/dxi of ``log(R exp(hat xi)) . g`` at xi = 0, reference ``J_r^{-1}(w)^T g`` (closed form);
- dist: d/dxi of ``dist(R_a, R_a R exp(hat xi))`` at xi = 0, reference ``w / |w|`` (none at w = 0). In float32 below
  ~1e-7 rad the input rounding leaves no direction to find, so every library has O(1) errors there.

Reported: the fraction of finite gradients and the largest per-sample relative error ``max|g - g_ref| / max|g_ref|``.

Speed: a batch of ``--batch`` random rotations, forward and forward+backward, float32 and float64, ours and roma
interleaved in alternating order over ``--reps`` repetitions in one process (median seconds and the ratio
ours / roma; > 1 means roma is faster). Run with one thread (``torch.set_num_threads(1)``); on a busy machine read
the ratios, not the absolute times. Writes JSON to ``--out`` and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from flowbb.geometry import so3

Tensor = torch.Tensor
CASES = ("random", "near0", "zero", "near_pi", "pi")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def former_exp(rotvec: Tensor) -> Tensor:
    """flowbb's exp before roma: Rodrigues, Taylor series of ``sin(w)/w``, ``(1 - cos w)/w^2`` below 1e-3 rad.

    Args:
        rotvec: ``[..., 3]``.
    Returns:
        ``[..., 3, 3]``.
    """
    t2 = (rotvec * rotvec).sum(-1)
    small = t2 < 1e-6
    safe = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    a = torch.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - t2 / 24.0 + t2 * t2 / 720.0, (1.0 - torch.cos(safe)) / (safe * safe))
    k = so3.hat(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def former_log(rots: Tensor) -> Tensor:
    """flowbb's log before roma: ``w / sin(w) * vee(R)`` (Taylor series below 1e-3 rad); for ``cos w < -1/2`` the axis
    from the symmetric part ``(R + R^T)/2 - cos(w) I = (1 - cos w) k k^T`` (largest diagonal column), sign from vee(R).

    Args:
        rots: ``[..., 3, 3]``.
    Returns:
        ``[..., 3]``.
    """
    antisym = so3.vee(rots)
    s = torch.linalg.vector_norm(antisym, dim=-1)
    c = 0.5 * (rots.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    theta = torch.atan2(s, c)
    near_pi, small = c < -0.5, theta < 1e-3
    safe_theta = torch.where(small | near_pi, torch.ones_like(theta), theta)
    t2 = theta * theta
    factor = torch.where(small, 1.0 + t2 / 6.0 + 7.0 * t2 * t2 / 360.0, safe_theta / torch.sin(safe_theta))
    v_generic = torch.where(near_pi, torch.zeros_like(factor), factor)[..., None] * antisym
    sym = 0.5 * (rots + rots.transpose(-1, -2))
    one_minus_c = torch.where(near_pi, 1.0 - c, torch.ones_like(c))
    c_safe = torch.where(near_pi, c, torch.zeros_like(c))
    eye = torch.eye(3, dtype=rots.dtype, device=rots.device)
    kkt = (sym - c_safe[..., None, None] * eye) / one_minus_c[..., None, None]
    diag = kkt.diagonal(dim1=-2, dim2=-1)
    idx = diag.argmax(-1)
    col = torch.gather(kkt, -1, idx[..., None, None].expand(*kkt.shape[:-1], 1)).squeeze(-1)
    axis = col / torch.sqrt(torch.gather(diag, -1, idx[..., None]).clamp_min(1e-12))
    sign = torch.where((axis * antisym).sum(-1) < 0, -torch.ones_like(c), torch.ones_like(c))
    return torch.where(near_pi[..., None], (sign * theta)[..., None] * axis, v_generic)


def former_geodesic_distance(rots_a: Tensor, rots_b: Tensor) -> Tensor:
    """flowbb's geodesic distance before: ``angle(R_a^T R_b)`` through a matrix product. ``[..., 3, 3]`` -> ``[...]``."""
    return so3.angle(rots_a.transpose(-1, -2) @ rots_b)


def rotation_libraries() -> dict[str, dict[str, Callable[..., Tensor]]]:
    """``{lib: {"exp": f([..., 3]) -> [..., 3, 3], "log": f([..., 3, 3]) -> [..., 3], "dist": f(Ra, Rb) -> [...]}}``.

    ``roma_naive`` and ``ours_matmul`` only have ``dist``.
    """
    import roma

    return {
        "ours": {"exp": former_exp, "log": former_log, "dist": so3.geodesic_distance},
        "roma": {"exp": roma.rotvec_to_rotmat, "log": roma.rotmat_to_rotvec, "dist": roma.rotmat_geodesic_distance},
        "roma_naive": {"dist": roma.rotmat_geodesic_distance_naive},
        "ours_matmul": {"dist": former_geodesic_distance},
    }


def case_rotvecs(case: str, n: int, seed: int = 0) -> Tensor:
    """Rotation vectors of one case, float64 ``[n, 3]`` (the coordinate axes and their negatives come first)."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    axes[:6] = torch.cat([eye, -eye])
    axes = axes / axes.norm(dim=-1, keepdim=True)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    angle = {
        "random": math.pi * u,
        "near0": 10.0 ** (-8.0 + 5.0 * u),
        "zero": torch.zeros_like(u),
        "near_pi": math.pi - 10.0 ** (-8.0 + 5.0 * u),
        "pi": torch.full_like(u, math.pi),
    }[case]
    return angle[:, None] * axes


def reference_exp(w: Tensor) -> Tensor:
    """float64 reference rotation ``matrix_exp(hat(w))``: ``[n, 3]`` -> ``[n, 3, 3]``."""
    return torch.linalg.matrix_exp(so3.hat(w.double()))


def inv_right_jacobian(w: Tensor) -> Tensor:
    """``J_r^{-1}(w) = I + hat(w)/2 + (1/t^2 - (1 + cos t)/(2 t sin t)) hat(w)^2``, float64 ``[n, 3]`` -> ``[n, 3, 3]``.

    ``log(R exp(hat xi)) = w + J_r^{-1}(w) xi + O(xi^2)`` for ``R = exp(w)``, angle t < pi (finite up to pi).
    """
    t = w.norm(dim=-1)
    small = t < 1e-2
    ts = torch.where(small, torch.ones_like(t), t)
    coef = torch.where(small, 1.0 / 12.0 + t**2 / 720.0 + t**4 / 30240.0,
                       1.0 / ts**2 - (1.0 + torch.cos(ts)) / (2.0 * ts * torch.sin(ts)))
    k = so3.hat(w)
    return torch.eye(3, dtype=w.dtype) + 0.5 * k + coef[:, None, None] * (k @ k)


def _rel_err(g: Tensor, ref: Tensor) -> float:
    """Largest per-sample ``max|g - ref| / max|ref|`` (samples on dim 0), over finite samples."""
    g, ref = g.double().flatten(1), ref.double().flatten(1)
    err = (g - ref).abs().amax(1) / ref.abs().amax(1).clamp_min(1e-300)
    ok = torch.isfinite(g).all(1)
    return float(err[ok].max()) if ok.any() else float("nan")


def accuracy_row(lib: dict[str, Callable[..., Tensor]], case: str, dtype: torch.dtype, n: int) -> dict[str, float]:
    """Errors and gradient checks of one library, case and dtype (keys: ``exp_err``, ``log_err``, ``dist_err``,
    ``roundtrip_err``, ``{exp,log,dist}_grad_finite`` (fraction), ``{exp,log,dist}_grad_rel_err``)."""
    w64 = case_rotvecs(case, n)
    r64 = reference_exp(w64)
    g = torch.Generator().manual_seed(1)
    ra64 = reference_exp(math.pi * torch.rand(n, 3, generator=g, dtype=torch.float64) / math.sqrt(3))
    gmat = torch.randn(n, 3, 3, generator=g, dtype=torch.float64)
    gvec = torch.randn(n, 3, generator=g, dtype=torch.float64)
    at_pi = case == "pi" or case == "near_pi"
    out: dict[str, float] = {}

    def vec_err(v: Tensor) -> Tensor:  # per-sample max abs error of a rotation vector; sign-free at angle ~pi
        e = (v.double() - w64).abs().amax(-1)
        return torch.minimum(e, (v.double() + w64).abs().amax(-1)) if at_pi else e

    if "exp" in lib:
        out["exp_err"] = float((lib["exp"](w64.to(dtype)).double() - r64).abs().amax())
        w = w64.to(dtype).clone().requires_grad_(True)
        (gw,) = torch.autograd.grad((lib["exp"](w) * gmat.to(dtype)).sum(), w)
        w_ref = w64.clone().requires_grad_(True)
        (gw_ref,) = torch.autograd.grad((reference_exp(w_ref) * gmat).sum(), w_ref)
        out["exp_grad_finite"] = float(torch.isfinite(gw).all(-1).double().mean())
        out["exp_grad_rel_err"] = _rel_err(gw, gw_ref)
    if "log" in lib:
        out["log_err"] = float(vec_err(lib["log"](r64.to(dtype))).max())
        if "exp" in lib:
            out["roundtrip_err"] = float(vec_err(lib["log"](lib["exp"](w64.to(dtype)))).max())
        xi = torch.zeros(n, 3, dtype=dtype, requires_grad=True)
        v = lib["log"](r64.to(dtype) @ torch.linalg.matrix_exp(so3.hat(xi)))
        (gxi,) = torch.autograd.grad((v * gvec.to(dtype)).sum(), xi)
        ref = (inv_right_jacobian(w64).transpose(-1, -2) @ gvec[..., None]).squeeze(-1)
        if at_pi:  # the log may come out as v ~ -w (same rotation at angle ~pi): its derivative is J_r^{-1}(-w)
            ref_neg = (inv_right_jacobian(-w64).transpose(-1, -2) @ gvec[..., None]).squeeze(-1)
            flipped = ((v.detach().double() + w64).abs().amax(-1) < (v.detach().double() - w64).abs().amax(-1))
            ref = torch.where(flipped[:, None], ref_neg, ref)
        out["log_grad_finite"] = float(torch.isfinite(gxi).all(-1).double().mean())
        out["log_grad_rel_err"] = _rel_err(gxi, ref)
    if "dist" in lib:
        rb64 = ra64 @ r64
        out["dist_err"] = float((lib["dist"](ra64.to(dtype), rb64.to(dtype)).double() - w64.norm(dim=-1)).abs().max())
        xi = torch.zeros(n, 3, dtype=dtype, requires_grad=True)
        d = lib["dist"](ra64.to(dtype), rb64.to(dtype) @ torch.linalg.matrix_exp(so3.hat(xi)))
        (gxi,) = torch.autograd.grad(d.sum(), xi)
        out["dist_grad_finite"] = float(torch.isfinite(gxi).all(-1).double().mean())
        if case != "zero":  # at angle ~pi the distance has a kink: either one-sided derivative (+-axis) is right
            axis = w64 / w64.norm(dim=-1, keepdim=True)
            flip = at_pi & ((gxi.detach().double() + axis).abs().amax(-1) < (gxi.detach().double() - axis).abs().amax(-1))
            out["dist_grad_rel_err"] = _rel_err(gxi, torch.where(flip[:, None], -axis, axis))
    return out


def _timed(fn: Callable[..., object], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _speed_job(lib: dict[str, Callable[..., Tensor]], fname: str, mode: str, w: Tensor, ra: Tensor, rb: Tensor) -> None:
    """One timed call: ``exp(w)``, ``log(rb)`` or ``dist(ra, rb)`` (``[batch, ...]``), with a backward pass of the
    sum unless ``mode == "forward"``."""
    x = (w if fname == "exp" else rb).detach().requires_grad_(mode != "forward")
    y = lib[fname](x) if fname != "dist" else lib[fname](ra, x)
    if mode != "forward":
        y.sum().backward()


def speed_rows(libs: dict[str, dict[str, Callable[..., Tensor]]], batch: int, reps: int) -> list[dict[str, object]]:
    """Median seconds of every library having the function, per (function, dtype, mode), interleaved in alternating
    order; ``ratio_<lib>_over_roma`` for each (``ours_s``, ``roma_s``, ``ratio_ours_over_roma`` always present)."""
    rows = []
    for dname, dtype in DTYPES.items():
        g = torch.Generator().manual_seed(2)
        w = so3.log(so3.sample_uniform((batch,), generator=g, dtype=torch.float64)).to(dtype)
        ra = so3.sample_uniform((batch,), generator=g, dtype=dtype)
        rb = so3.exp(w)
        for fname in ("exp", "log", "dist"):
            for mode in ("forward", "forward+backward"):
                names = [k for k, lib in libs.items() if fname in lib and k != "roma_naive"]
                times: dict[str, list[float]] = {k: [] for k in names}
                args = (fname, mode, w, ra, rb)
                for k in names:  # warm-up
                    _speed_job(libs[k], *args)
                for r in range(reps):
                    for k in names if r % 2 == 0 else names[::-1]:
                        times[k].append(_timed(_speed_job, libs[k], *args))
                med = {k: statistics.median(v) for k, v in times.items()}
                row: dict[str, object] = {"function": fname, "dtype": dname, "mode": mode}
                row.update({f"{k}_s": v for k, v in med.items()})
                row.update({f"ratio_{k}_over_roma": v / med["roma"] for k, v in med.items() if k != "roma"})
                rows.append(row)
                _log(f"  speed {fname:4s} {dname} {mode:17s} " + "  ".join(f"{k} {v * 1e3:8.2f} ms" for k, v in
                                                                           med.items()) +
                     f"  ours/roma {med['ours'] / med['roma']:.2f}")
    return rows


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="rotations per accuracy case")
    p.add_argument("--batch", type=int, default=100_000, help="batch of the speed measurement")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions per speed point")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench_results/compare_rotations.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import roma

    libs = rotation_libraries()
    accuracy = []
    for case in CASES:
        for dname, dtype in DTYPES.items():
            for lname, lib in libs.items():
                if lname == "ours_matmul":
                    continue
                row = {"case": case, "dtype": dname, "lib": lname, **accuracy_row(lib, case, dtype, args.n)}
                accuracy.append(row)
                _log(f"  accuracy {case:8s} {dname} {lname:10s} " +
                     " ".join(f"{k}={v:.2g}" for k, v in row.items() if isinstance(v, float)))
    _log(f"speed: batch {args.batch}, {args.reps} interleaved repetitions, {args.threads} thread(s)")
    speed = speed_rows(libs, args.batch, args.reps)
    w = case_rotvecs("random", 64)
    in_use = {"so3.exp_is_roma": bool(torch.equal(so3.exp(w), roma.rotvec_to_rotmat(w))),
              "so3.log_is_roma": bool(torch.equal(so3.log(reference_exp(w)), roma.rotmat_to_rotvec(reference_exp(w))))}
    result = {"torch": torch.__version__, "roma": roma.__version__, "python": platform.python_version(), **in_use,
              "threads": args.threads, "n": args.n, "batch": args.batch, "reps": args.reps,
              "accuracy": accuracy, "speed": speed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(summary_table(accuracy, speed))
    _log(f"wrote {args.out}")
    return result


def summary_table(accuracy: list[dict[str, object]], speed: list[dict[str, object]]) -> str:
    """Markdown tables of the accuracy rows and the speed ratios."""
    keys = ["exp_err", "log_err", "roundtrip_err", "dist_err", "exp_grad_rel_err", "log_grad_rel_err",
            "dist_grad_rel_err", "exp_grad_finite", "log_grad_finite", "dist_grad_finite"]
    lines = ["| case | dtype | lib | " + " | ".join(keys) + " |", "|" + "---|" * (3 + len(keys))]
    for r in accuracy:
        cells = [f"{r[k]:.2g}" if isinstance(r.get(k), float) else "" for k in keys]
        lines.append(f"| {r['case']} | {r['dtype']} | {r['lib']} | " + " | ".join(cells) + " |")
    lines += ["", "| function | dtype | mode | ours / roma time | former (matmul) dist / roma |", "|---|---|---|---|---|"]
    lines += [f"| {s['function']} | {s['dtype']} | {s['mode']} | {s['ratio_ours_over_roma']:.2f} | "
              + (f"{s['ratio_ours_matmul_over_roma']:.2f} |" if "ratio_ours_matmul_over_roma" in s else " |")
              for s in speed]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
