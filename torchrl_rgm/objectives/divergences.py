"""f-divergences and their convex conjugates, as used by the DICE dual of RGM.

For a convex ``f`` with ``f(1) = 0``, ``D_f(p || q) = E_q[f(p / q)]`` and the
convex conjugate is :math:`f^*(y) = \\sup_x \\, x y - f(x)`. The lower level of
RGM minimises

.. math::

    L_V = (1-\\gamma)\\,\\mathbb{E}_{\\mu_0}[V(s_0)]
          + \\alpha\\,\\mathbb{E}_{D}[f^*(A)],\\qquad
    A = (\\hat r + \\gamma (1-d) V(s') - V(s)) / \\alpha,

and the optimal visitation ratio is :math:`w = d^\\pi / d^D = f^{*\\prime}(A)`.

=========  ===============================  ================================  =========================
name       f(x)                             f*(y)                             f*'(y)
=========  ===============================  ================================  =========================
kl         x log x                          exp(y-1)                          exp(y-1)
chi2       ½(x-1)² (x ≥ 0)                  ½ relu(y+1)² − ½                  relu(y+1)
soft_chi2  x log x − x + 1 (x<1);           exp(y) − 1 (y<0);                 exp(y) (y<0);
           ½(x-1)² (x≥1)                    ½y² + y (y≥0)                     y + 1 (y≥0)
=========  ===============================  ================================  =========================

``kl_logmeanexp`` is the variant used by the RGM/SMODICE reference code: the
normalisation :math:`\\sum d = 1` is imposed explicitly, which turns the KL
dual term into :math:`\\alpha \\log \\mathbb{E}_D[\\exp A]` and the weights
into the batch-normalised :math:`w = \\exp(A) / \\mathbb{E}_D[\\exp A]`
(the reference uses ``exp(A)`` un-normalised; that is only right up to a
constant factor, since ``V`` is then defined up to an additive constant).
Both KL forms have the same optimum.

Large advantages are handled by ``advantage_clip`` ``c``: beyond ``c`` the
conjugate is continued by its tangent, :math:`f^*(c) + f^{*\\prime}(c)(y-c)`,
so the dual stays convex, finite and keeps its gradient, and the weight is
capped at :math:`f^{*\\prime}(c)`.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = [
    "FDivergence",
    "KL",
    "ChiSquared",
    "SoftChiSquared",
    "KLLogMeanExp",
    "DIVERGENCES",
    "get_divergence",
]


class FDivergence:
    """An f-divergence: ``f``, its conjugate ``f_star`` and ``f_star_prime``.

    ``dual_term(A)`` is :math:`\\mathbb{E}[f^*(A)]` over the batch (with the
    tangent continuation above ``advantage_clip``); ``visitation_weight(A)``
    is :math:`f^{*\\prime}(\\min(A, c))`.
    """

    name: str = ""

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def f_star(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def f_star_prime(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dual_term(self, advantage: torch.Tensor, advantage_clip: float | None = None) -> torch.Tensor:
        if advantage_clip is None:
            return self.f_star(advantage).mean()
        c = torch.as_tensor(advantage_clip, dtype=advantage.dtype, device=advantage.device)
        inside = self.f_star(advantage.clamp(max=advantage_clip))
        excess = (advantage - c).clamp(min=0.0)
        return (inside + self.f_star_prime(c) * excess).mean()

    def weight_advantage(self, log_density_ratio: torch.Tensor) -> torch.Tensor:
        """The advantage ``A`` whose weight :math:`f^{*\\prime}(A)` is :math:`\\rho = e^{\\log d^E/d^D}`:
        :math:`f'(\\rho)`. With ``V`` held fixed, ``r^ = alpha f'(rho)`` minimises the upper level exactly."""
        raise NotImplementedError

    def visitation_weight(
        self, advantage: torch.Tensor, advantage_clip: float | None = None
    ) -> torch.Tensor:
        if advantage_clip is not None:
            advantage = advantage.clamp(max=advantage_clip)
        return self.f_star_prime(advantage)

    def expert_divergence(
        self,
        weight: torch.Tensor,
        log_density_ratio: torch.Tensor,
        advantage: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample :math:`\\rho f(w / \\rho)` with :math:`\\rho = d^E/d^D`.

        Its mean over ``D`` is :math:`D_f(w\\,d^D \\,\\|\\, d^E)`, the upper-level
        objective of RGM. ``advantage`` lets KL use ``log w = A - 1`` exactly. ``f`` is taken
        with :math:`f'(1) = 0` (only KL changes: :math:`x\\log x - x + 1`), so that with ``V``
        held fixed the gradient vanishes where :math:`w = \\rho`.
        """
        ratio = log_density_ratio.exp()
        return ratio * self.f(weight / ratio)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class KL(FDivergence):
    """Kullback-Leibler: :math:`f(x) = x \\log x`, :math:`f^*(y) = f^{*\\prime}(y) = e^{y-1}` (``kl``)."""

    name = "kl"

    def f(self, x):
        return torch.xlogy(x, x)

    def f_star(self, y):
        return torch.exp(y - 1.0)

    def f_star_prime(self, y):
        return torch.exp(y - 1.0)

    def weight_advantage(self, log_density_ratio):
        return log_density_ratio + 1.0

    def expert_divergence(self, weight, log_density_ratio, advantage=None):
        # rho * g(w / rho) with g(x) = x log x - x + 1, i.e. w (log w - log rho) - w + rho.
        # g and x log x differ by (x - 1): the same divergence between normalised visitations,
        # but with V held fixed w is not normalised, and the gradient of x log x,
        # w (log(w / rho) + 1), pushes every Δr down until tanh saturates; g's vanishes at w = rho.
        log_w = torch.log(weight.clamp(min=1e-30)) if advantage is None else advantage - 1.0
        return weight * (log_w - log_density_ratio) - weight + log_density_ratio.exp()


class ChiSquared(FDivergence):
    """Pearson :math:`\\chi^2`: :math:`f(x) = \\tfrac12 (x-1)^2` on :math:`x \\ge 0` (``chi2``).

    :math:`f^*(y) = \\tfrac12 \\operatorname{relu}(y+1)^2 - \\tfrac12`, so the weights
    :math:`f^{*\\prime}(y) = \\operatorname{relu}(y+1)` are exactly zero for :math:`y \\le -1`.
    """

    name = "chi2"

    def f(self, x):
        return 0.5 * (x - 1.0) ** 2

    def f_star(self, y):
        return 0.5 * F.relu(y + 1.0) ** 2 - 0.5

    def f_star_prime(self, y):
        return F.relu(y + 1.0)

    def weight_advantage(self, log_density_ratio):
        return log_density_ratio.exp() - 1.0


class SoftChiSquared(FDivergence):
    """KL below 1, :math:`\\chi^2` above (``soft_chi2``).

    :math:`f(x) = x \\log x - x + 1` for :math:`x < 1` and :math:`\\tfrac12 (x-1)^2` for
    :math:`x \\ge 1`: the weights :math:`f^{*\\prime}(y)` are positive everywhere (exponential
    for :math:`y < 0`) and grow only linearly (:math:`y + 1`) for :math:`y \\ge 0`.
    """

    name = "soft_chi2"

    def f(self, x):
        safe = x.clamp(min=1e-30)  # d/dx x log x is -inf at 0; torch.where would turn it into NaN
        below = safe * torch.log(safe) - x + 1.0
        above = 0.5 * (x - 1.0) ** 2
        return torch.where(x < 1.0, below, above)

    def f_star(self, y):
        below = torch.expm1(y.clamp(max=0.0))
        above = 0.5 * y**2 + y
        return torch.where(y < 0.0, below, above)

    def f_star_prime(self, y):
        below = torch.exp(y.clamp(max=0.0))
        above = y + 1.0
        return torch.where(y < 0.0, below, above)

    def weight_advantage(self, log_density_ratio):
        return torch.where(log_density_ratio < 0.0, log_density_ratio, log_density_ratio.exp() - 1.0)


class KLLogMeanExp(KL):
    """KL with the normalisation imposed explicitly (SMODICE / reference-code form).

    ``dual_term(A) = log E[exp A]`` and ``visitation_weight(A) = exp(A) / E[exp A]``
    (batch-normalised, so it averages to 1). The advantage clip does not apply:
    the log-mean-exp is finite for any input.
    """

    name = "kl_logmeanexp"

    def dual_term(self, advantage, advantage_clip=None):
        flat = advantage.reshape(-1)
        return torch.logsumexp(flat, 0) - math.log(flat.numel())

    def visitation_weight(self, advantage, advantage_clip=None):
        flat = advantage.reshape(-1)
        log_mean = torch.logsumexp(flat, 0) - math.log(flat.numel())
        return torch.exp(advantage - log_mean)

    def weight_advantage(self, log_density_ratio):
        return log_density_ratio  # weights are exp(A) / E[exp A]: any constant shift gives the same ones

    def expert_divergence(self, weight, log_density_ratio, advantage=None):
        # the weights are batch-normalised here, so the plain x log x form has no drift
        return weight * (torch.log(weight.clamp(min=1e-30)) - log_density_ratio)


#: The f-divergences by name (``cls.name`` → class), as :func:`get_divergence` accepts them.
DIVERGENCES: dict[str, type[FDivergence]] = {
    cls.name: cls for cls in (KL, ChiSquared, SoftChiSquared, KLLogMeanExp)
}


def get_divergence(divergence: str | FDivergence) -> FDivergence:
    """Return the divergence named ``divergence`` (one of :data:`DIVERGENCES`)."""
    if isinstance(divergence, FDivergence):
        return divergence
    try:
        return DIVERGENCES[divergence]()
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown divergence {divergence!r}; accepted values are {sorted(DIVERGENCES)}."
        ) from None
