"""The discriminator's temperature (``algo.density_ratio_temperature=auto``): the maximum-likelihood (KLIEP) ratio
in the family ``exp(T ℓ) / E_D[exp(T ℓ)]``, checked against an analytic ratio and an independent optimiser."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from torchrl_rgm.train import fit_ratio_temperature


def test_gaussian_shift_recovers_the_exact_ratio():
    # d^D = N(0, 1), d^E = N(mu, 1): d^E/d^D = exp(mu x - mu^2/2), i.e. T = mu on the feature x itself; a
    # discriminator three times under-confident (logit x / 3) needs T = 3 mu.
    g = torch.Generator().manual_seed(0)
    mu = 1.5
    union = torch.randn(200_000, generator=g, dtype=torch.float64)
    expert = torch.randn(20_000, generator=g, dtype=torch.float64) + mu
    assert fit_ratio_temperature(union, expert) == pytest.approx(mu, rel=0.03)
    assert fit_ratio_temperature(union / 3, expert / 3) == pytest.approx(3 * mu, rel=0.03)


@pytest.mark.parametrize("seed", range(3))
def test_fit_maximises_the_kliep_likelihood(seed):
    # independent: scipy's bounded scalar search on E_E[T l] - log E_D[exp(T l)]
    rng = np.random.default_rng(seed)
    union = rng.standard_normal(5000) * rng.uniform(0.5, 3)
    expert = rng.choice(union, 200) + rng.uniform(0.5, 2)

    def negative_likelihood(t):
        return -(t * expert.mean() - (np.logaddexp.reduce(t * union) - math.log(union.size)))

    best = minimize_scalar(negative_likelihood, bounds=(1e-3, 100), method="bounded", options={"xatol": 1e-8}).x
    fitted = fit_ratio_temperature(torch.from_numpy(union), torch.from_numpy(expert))
    assert fitted == pytest.approx(best, rel=1e-4)
    # the moment condition holds at the fit: the tilted data's mean logit is the expert's
    p = torch.softmax(fitted * torch.from_numpy(union), 0)
    assert (p * torch.from_numpy(union)).sum().item() == pytest.approx(expert.mean(), rel=1e-6)


def test_degenerate_cases_stay_finite():
    union = torch.linspace(-1, 1, 101)
    assert fit_ratio_temperature(union, torch.tensor([1.0, 1.0])) == 100.0  # expert at the union's maximum
    assert fit_ratio_temperature(union, torch.tensor([-1.0])) == pytest.approx(1e-3)  # below the union's mean
