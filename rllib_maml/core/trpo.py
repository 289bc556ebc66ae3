"""TRPO's pieces for the meta-step: Fisher-vector products, conjugate gradient, line search.

Pure torch, on a flat vector of the policy's parameters. As in the MAML paper and
pytorch-maml-rl, the Fisher is the Hessian of the mean KL between the policies that
sampled the post-adaptation data and the adapted policies ``theta'_i(theta)``, taken
through the inner steps; at the sampling parameters the KL and its gradient are 0, so
its Hessian is the Fisher information of the map ``theta -> theta'_i(theta)``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

Params = Dict[str, torch.Tensor]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    return [chunk.view_as(t) for chunk, t in zip(vector.split([t.numel() for t in like]), like)]


def fisher_vector_product_fn(
    kl: torch.Tensor, params: Sequence[torch.Tensor], damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> (H v + damping * v)``, ``H`` the Hessian of the scalar ``kl`` w.r.t. ``params``.

    The KL's gradient is taken once with a graph; each product is one more backward
    pass through it (Pearlmutter's trick), never a dense Hessian.
    """
    grads = flatten(torch.autograd.grad(kl, list(params), create_graph=True))

    def product(vector: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad((grads * vector.detach()).sum(), list(params), retain_graph=True)
        return flatten(hv).detach() + damping * vector

    return product


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, residual_tol: float = 1e-10
) -> torch.Tensor:
    """Approximately solves ``A x = b`` for symmetric positive-definite ``A`` given as ``matvec``."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    r_dot = r @ r
    for _ in range(iters):
        if r_dot <= residual_tol:
            break
        ap = matvec(p)
        alpha = r_dot / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        new_r_dot = r @ r
        p = r + (new_r_dot / r_dot) * p
        r_dot = new_r_dot
    return x


@dataclasses.dataclass(frozen=True)
class LineSearchResult:
    """The accepted fraction of the full step (None: every candidate was rejected)."""

    fraction: Optional[float]
    loss: float
    kl: float
    tries: int


def backtracking_line_search(
    evaluate: Callable[[torch.Tensor], Tuple[float, float]],
    full_step: torch.Tensor,
    loss_before: float,
    max_kl: float,
    max_steps: int,
    backtrack_ratio: float,
) -> LineSearchResult:
    """Tries ``ratio**k * full_step`` for ``k = 0..max_steps-1``; accepts the first whose
    loss is below ``loss_before`` and whose KL is at most ``max_kl``.

    ``evaluate(step) -> (loss, kl)`` at ``theta + step``.
    """
    loss, kl = loss_before, 0.0
    for k in range(max_steps):
        fraction = backtrack_ratio**k
        loss, kl = evaluate(fraction * full_step)
        if kl <= max_kl and loss < loss_before:
            return LineSearchResult(fraction=fraction, loss=loss, kl=kl, tries=k + 1)
    return LineSearchResult(fraction=None, loss=loss, kl=kl, tries=max_steps)


def natural_step(
    gradient: torch.Tensor, fvp: Callable[[torch.Tensor], torch.Tensor], max_kl: float, cg_iters: int
) -> torch.Tensor:
    """The full TRPO step: ``-F^{-1} g`` scaled so that its quadratic KL estimate is ``max_kl``."""
    direction = conjugate_gradient(fvp, -gradient, cg_iters)
    quadratic = 0.5 * (direction @ fvp(direction))
    if not torch.isfinite(quadratic) or quadratic <= 0:
        return torch.zeros_like(direction)
    return direction * torch.sqrt(max_kl / quadratic)
