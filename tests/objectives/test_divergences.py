import math

import pytest
import torch

from torchrl_rgm.objectives.divergences import DIVERGENCES, get_divergence

POINTWISE = ["kl", "chi2", "soft_chi2"]


@pytest.mark.parametrize("name", POINTWISE)
def test_conjugate_is_the_supremum(name):
    """f*(y) = sup_{x >= 0} (x y - f(x)), checked on a fine grid of x."""
    div = get_divergence(name)
    x = torch.linspace(0.0, 60.0, 600_001, dtype=torch.float64)
    fx = div.f(x)
    for y in torch.linspace(-4.0, 3.0, 29, dtype=torch.float64):
        numeric = torch.max(x * y - fx)
        assert div.f_star(y).item() == pytest.approx(numeric.item(), abs=1e-6), float(y)


@pytest.mark.parametrize("name", POINTWISE)
def test_conjugate_derivative_matches_autograd(name):
    div = get_divergence(name)
    y = torch.linspace(-5.0, 5.0, 1001, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(div.f_star(y).sum(), y)
    torch.testing.assert_close(div.f_star_prime(y.detach()), grad, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", POINTWISE)
def test_f_is_zero_at_one_and_derivative_inverts(name):
    div = get_divergence(name)
    assert div.f(torch.tensor(1.0, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    # f*' is the inverse of f' where f is differentiable: f'(f*'(y)) = y
    y = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64)
    x = div.f_star_prime(y).requires_grad_(True)
    (fprime,) = torch.autograd.grad(div.f(x).sum(), x)
    mask = x.detach() > 1e-6
    torch.testing.assert_close(fprime[mask], y[mask], atol=1e-8, rtol=1e-8)


def test_table_values():
    """Spot values of the METHOD.md table (not the reference code's swapped soft-chi2)."""
    kl, chi2, soft = (get_divergence(n) for n in POINTWISE)
    t = torch.tensor
    assert kl.f_star(t(1.0)).item() == pytest.approx(1.0)
    assert chi2.f_star(t(1.0)).item() == pytest.approx(1.5)
    assert chi2.f_star(t(-3.0)).item() == pytest.approx(-0.5)
    assert chi2.f_star_prime(t(-3.0)).item() == 0.0
    assert soft.f_star(t(-1.0)).item() == pytest.approx(math.exp(-1) - 1)
    assert soft.f_star(t(2.0)).item() == pytest.approx(4.0)
    assert soft.f_star_prime(t(2.0)).item() == pytest.approx(3.0)
    assert soft.f_star_prime(t(-1.0)).item() == pytest.approx(math.exp(-1))


@pytest.mark.parametrize("name", POINTWISE)
def test_advantage_clip_continues_by_the_tangent(name):
    div = get_divergence(name)
    c = 2.0
    y = torch.tensor([c + 3.0], dtype=torch.float64, requires_grad=True)
    value = div.dual_term(y, c)
    expected = div.f_star(torch.tensor(c, dtype=torch.float64)) + 3.0 * div.f_star_prime(
        torch.tensor(c, dtype=torch.float64)
    )
    assert value.item() == pytest.approx(expected.item())
    (g,) = torch.autograd.grad(value, y)
    assert g.item() == pytest.approx(div.f_star_prime(torch.tensor(c, dtype=torch.float64)).item())
    below = torch.tensor([c - 0.5], dtype=torch.float64)
    assert div.dual_term(below, c).item() == pytest.approx(div.f_star(below).item())
    assert div.visitation_weight(y.detach(), c).item() == pytest.approx(
        div.f_star_prime(torch.tensor(c)).item(), rel=1e-6
    )


def test_logmeanexp_weights_average_to_one():
    div = get_divergence("kl_logmeanexp")
    a = torch.randn(100, 1) * 5
    w = div.visitation_weight(a)
    assert w.mean().item() == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(w / w.sum(), torch.softmax(a.flatten(), 0).view(-1, 1))
    big = torch.full((10, 1), 1e6)
    assert torch.isfinite(div.dual_term(big)) and torch.isfinite(div.visitation_weight(big)).all()


def test_unknown_divergence_lists_the_accepted_names():
    with pytest.raises(ValueError, match="accepted values are") as err:
        get_divergence("js")
    for name in DIVERGENCES:
        assert name in str(err.value)
