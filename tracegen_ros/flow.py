"""Flow matching with the linear stochastic interpolant (no torch.nn here).

Convention (tau = 0 is noise, tau = 1 is data)::

    X_tau = (1 - tau) * X0 + tau * X1,   X0 ~ N(0, I),  X1 ~ data
    target velocity = dX_tau / dtau = X1 - X0

Training regresses the velocity with a (masked) MSE; sampling integrates
dX/dtau = v(X, tau) from tau = 0 to 1 on a uniform grid (Euler or Heun),
optionally with classifier-free guidance ``v = v_u + s (v_c - v_u)``.

Data prediction: a network may output an estimate of X1 instead of the
velocity (useful when a token carries more numbers than the network's width,
which cannot then pass the noise X0 through); the velocity it implies at
(X_tau, tau) is ``(X1_hat - X_tau) / (1 - tau)`` (``data_to_velocity``), and
the regression target at the same point is the same map of the true X1,
which equals X1 - X0 exactly. Training clamps ``1 - tau`` at ``t_eps`` on both
sides (the same map, so the target stays consistent); sampling never reaches
tau = 1 (its last evaluation is at 1 - 1/steps).

For a point-mass data distribution X1 = mu the exact velocity is
``(mu - x) / (1 - tau)`` and one Euler pass over any uniform grid lands on mu
exactly (the last step has tau = 1 - dtau), which the unit test checks.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = [
    "data_to_velocity",
    "masked_mse",
    "interpolant",
    "velocity_target",
    "sample_tau",
    "flow_matching_loss",
    "integrate",
    "guided",
    "VelocityFn",
]

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, tau (B,)) -> v


def _bcast(tau: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tau.to(like.dtype).view((-1,) + (1,) * (like.dim() - 1))


def interpolant(x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """X_tau = (1 - tau) x0 + tau x1; tau (B,) broadcast over the other axes."""
    t = _bcast(tau, x0)
    return (1.0 - t) * x0 + t * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """d X_tau / d tau = x1 - x0."""
    return x1 - x0


def sample_tau(batch: int, generator: torch.Generator | None = None, kind: str = "uniform",
               device: torch.device | str = "cpu", mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Training times in [0, 1): 'uniform' or 'logit_normal' (sigmoid of N(mean, std^2))."""
    if kind == "uniform":
        return torch.rand(batch, generator=generator, device=device)
    if kind == "logit_normal":
        return torch.sigmoid(mean + std * torch.randn(batch, generator=generator, device=device))
    raise ValueError(f"unknown tau sampling '{kind}' (uniform, logit_normal)")


def flow_matching_loss(pred_v: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between ``pred_v`` and ``x1 - x0`` over the entries where
    ``mask`` (broadcastable to x1, bool) is True; all entries without a mask."""
    return masked_mse(pred_v, velocity_target(x0, x1), mask)


def data_to_velocity(x1_hat: torch.Tensor, x_tau: torch.Tensor, tau: torch.Tensor,
                     t_eps: float = 0.0) -> torch.Tensor:
    """(x1_hat - x_tau) / max(1 - tau, t_eps, 1e-6): the velocity implied by a data estimate."""
    denom = (1.0 - _bcast(tau, x_tau)).clamp(min=max(t_eps, 1e-6))
    return (x1_hat - x_tau) / denom


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of (pred - target)^2 over the entries where ``mask`` (broadcastable, bool) is True."""
    err = (pred - target) ** 2
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype).expand_as(err)
    return (err * m).sum() / m.sum().clamp(min=1.0)


def guided(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: v_u + scale (v_c - v_u); scale 1 = v_c."""
    return v_uncond + scale * (v_cond - v_uncond)


@torch.no_grad()
def integrate(velocity: VelocityFn, x0: torch.Tensor, steps: int, method: str = "euler") -> torch.Tensor:
    """Solve dX/dtau = velocity(X, tau) from tau = 0 (x0) to tau = 1 in ``steps`` uniform steps.

    ``method``: 'euler' (``steps`` velocity calls) or 'heun' (2 per step, the
    last one evaluated at tau = 1).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown ODE method '{method}' (euler, heun)")
    x = x0
    b = x0.shape[0]
    dt = 1.0 / steps
    for i in range(steps):
        tau = torch.full((b,), i * dt, device=x0.device, dtype=x0.dtype)
        v = velocity(x, tau)
        if method == "euler":
            x = x + dt * v
        else:
            x_pred = x + dt * v
            v2 = velocity(x_pred, tau + dt)
            x = x + 0.5 * dt * (v + v2)
    return x
