import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_rgm.modules import make_discriminator
from torchrl_rgm.objectives import DiscriminatorLoss

MU_EXPERT = torch.tensor([1.0, 0.5])


def analytic_log_ratio(x):
    """log N(x; mu_E, I) - log N(x; 0, I)."""
    return x @ MU_EXPERT - 0.5 * MU_EXPERT.pow(2).sum()


def sample(n, expert, g):
    x = torch.randn(n, 2, generator=g)
    return x + MU_EXPERT if expert else x


def train(loss, steps, g, expert_batch=128, union_batch=256, lr=1e-3):
    opt = torch.optim.Adam(loss.parameters(), lr=lr)
    for _ in range(steps):
        td = TensorDict(
            expert=TensorDict(observation=sample(expert_batch, True, g), batch_size=[expert_batch]),
            union=TensorDict(observation=sample(union_batch, False, g), batch_size=[union_batch]),
        )
        out = loss(td)
        opt.zero_grad()
        (out["loss_discriminator"] + out["loss_gradient_penalty"]).backward()
        opt.step()
    return out


def test_recovers_the_analytic_log_density_ratio():
    """Unequal batch sizes, no penalty: the logit converges to log N(mu_E, I)/N(0, I)."""
    g = torch.Generator().manual_seed(0)
    net = make_discriminator(2, 0, state_only=True, hidden=(64, 64))
    loss = DiscriminatorLoss(net, gradient_penalty=0.0)
    train(loss, 2000, g)
    # evaluate where both densities have mass
    x = torch.cat([sample(2000, True, g), sample(2000, False, g)])
    x = x[(x - MU_EXPERT / 2).norm(dim=-1) < 2.0]
    td = loss.log_density_ratio(TensorDict(observation=x, batch_size=[len(x)]))
    err = (td["log_density_ratio"].squeeze(-1) - analytic_log_ratio(x)).abs().mean()
    assert err < 0.15, err  # stated tolerance: mean |error| < 0.15 nats within radius 2


def test_gradient_penalty_keeps_the_ranking_and_bounds_the_slope():
    g = torch.Generator().manual_seed(1)
    net = make_discriminator(2, 0, state_only=True, hidden=(64, 64))
    loss = DiscriminatorLoss(net)  # lambda = 10 by default
    assert loss.gradient_penalty == 10.0
    out = train(loss, 1000, g)
    assert out["accuracy_expert"] > 0.55 and out["accuracy_union"] > 0.55
    x = sample(2000, False, g).requires_grad_(True)
    logit = net(TensorDict(observation=x, batch_size=[2000]))["discriminator_logit"]
    (grad,) = torch.autograd.grad(logit.sum(), x)
    assert (grad.norm(dim=-1).mean() - 1.0).abs() < 0.3
    corr = torch.corrcoef(torch.stack([logit.detach().squeeze(-1), analytic_log_ratio(x.detach())]))[0, 1]
    assert corr > 0.95


def test_state_action_input_and_every_layer_is_trained():
    """The reference code never trained the discriminator's input layers: here all get gradient."""
    net = make_discriminator(4, 2)
    loss = DiscriminatorLoss(net)
    td = TensorDict(
        expert=TensorDict(observation=torch.randn(5, 4), action=torch.rand(5, 2), batch_size=[5]),
        union=TensorDict(observation=torch.randn(33, 4), action=torch.rand(33, 2), batch_size=[33]),
    )
    for key in ("loss_discriminator", "loss_gradient_penalty"):
        net.zero_grad()
        loss(td)[key].backward()
        for name, p in net.named_parameters():
            # a ReLU net's input gradient does not depend on its biases: the penalty moves weights only
            if key == "loss_gradient_penalty" and "bias" in name:
                continue
            assert p.grad is not None and p.grad.abs().sum() > 0, (key, name)


def test_log_density_ratio_writes_the_logit():
    net = make_discriminator(4, 2)
    loss = DiscriminatorLoss(net)
    td = TensorDict(observation=torch.randn(7, 4), action=torch.rand(7, 2), batch_size=[7])
    out = loss.log_density_ratio(td)
    assert out is td and td["log_density_ratio"].shape == (7, 1)
    torch.testing.assert_close(td["log_density_ratio"], net(td.select("observation", "action"))["discriminator_logit"])
    loss.set_keys(log_density_ratio="ratio")
    assert "ratio" in loss.log_density_ratio(td.clone()).keys()


def test_missing_inputs_get_one_clear_error():
    loss = DiscriminatorLoss(make_discriminator(4, 2))
    only_obs = TensorDict(observation=torch.randn(3, 4), batch_size=[3])
    with pytest.raises(KeyError, match="action"):
        loss(TensorDict(expert=only_obs, union=only_obs))
    full = TensorDict(observation=torch.randn(3, 4), action=torch.rand(3, 2), batch_size=[3])
    with pytest.raises(KeyError, match="'union'"):
        loss(TensorDict(expert=full))
    with pytest.raises(ValueError, match="gradient_penalty"):
        DiscriminatorLoss(make_discriminator(4, 2), gradient_penalty=-1)
    two_outputs = TensorDictModule(torch.nn.Linear(4, 2), ["observation"], ["a"])
    two_outputs.out_keys.append("b")
    with pytest.raises(ValueError, match="exactly one"):
        DiscriminatorLoss(two_outputs)
