"""The full update step (discriminator frozen): compiled vs eager, precision, checkpoints."""
import io

import pytest
import torch
import torch._inductor.config

from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network
from torchrl_rgm.objectives import RGMLoss
from torchrl_rgm.train import RGMUpdate

from .conftest import ACT, OBS, random_batch


def build(stochastic=False, seed=0, **kwargs):
    torch.manual_seed(seed)
    value = make_value_network(OBS, hidden=(64, 64))
    actor = make_actor(OBS, ACT, stochastic=stochastic, hidden=(64, 64))
    correction = make_reward_correction_network(OBS, ACT, hidden=(64, 64))
    # a faster upper level than the paper's 3e-7, so that a few steps move it measurably
    return RGMUpdate(RGMLoss(value, actor, correction), correction_lr=1e-3, total_steps=100, **kwargs)


def params(update):
    return {n: p.detach().clone() for n, p in update.rgm_loss.named_parameters()}


@pytest.mark.parametrize("stochastic", [False, True], ids=["deterministic", "tanh-gaussian"])
def test_compiled_update_matches_eager(stochastic):
    # the same random stream in compiled code as in eager (the tanh-Gaussian samples)
    with torch._inductor.config.patch(fallback_random=True):
        _compare_compiled_and_eager(stochastic)


def _compare_compiled_and_eager(stochastic):
    eager = build(stochastic)
    compiled = build(stochastic, compile=True)
    start = params(eager)
    for name, p in params(compiled).items():
        torch.testing.assert_close(p, start[name])
    for step in range(4):
        batch = random_batch(128, seed=step)
        torch.manual_seed(100 + step)
        m_eager = eager(batch.clone())
        torch.manual_seed(100 + step)
        m_compiled = compiled(batch.clone())
        for key in m_eager.keys():
            torch.testing.assert_close(m_compiled[key], m_eager[key], rtol=1e-4, atol=1e-5, msg=key)
    after_eager, after_compiled = params(eager), params(compiled)
    moved = 0
    for name, p in after_eager.items():
        torch.testing.assert_close(after_compiled[name], p, rtol=1e-4, atol=1e-5, msg=name)
        moved += int(not torch.equal(p, start[name]))
    assert moved == len(after_eager)  # every parameter, Δr included, was updated


def test_bfloat16_autocast_stays_close_to_float32():
    fp32 = build()
    bf16 = build(autocast_dtype=torch.bfloat16)
    batch = random_batch(256)
    m32, m16 = fp32(batch.clone()), bf16(batch.clone())
    for key in ("loss_value", "loss_actor", "loss_reward_correction"):
        assert m16[key].dtype == torch.float32
        torch.testing.assert_close(m16[key], m32[key], rtol=0.05, atol=0.02, msg=key)


def test_checkpoint_round_trip_with_weights_only():
    a = build()
    for step in range(3):
        a(random_batch(64, seed=step))
    buffer = io.BytesIO()
    torch.save({"losses": a.rgm_loss.state_dict(), "update": a.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    b = build(seed=1)
    b.rgm_loss.load_state_dict(state["losses"])
    b.load_state_dict(state["update"])
    assert b.scheduler.last_epoch == a.scheduler.last_epoch == 3
    batch = random_batch(64, seed=10)
    ma, mb = a(batch.clone()), b(batch.clone())
    for key in ma.keys():
        torch.testing.assert_close(mb[key], ma[key], msg=key)
    for (name, p), q in zip(a.rgm_loss.named_parameters(), b.rgm_loss.parameters()):
        torch.testing.assert_close(q, p, msg=name)


def test_learning_rates_follow_the_paper_schedules():
    update = build()
    lrs = {g["name"]: g["lr"] for g in update.optimizer.param_groups}
    assert lrs == {"value": 3e-4, "actor": 3e-4, "reward_correction": 1e-3}
    for _ in range(50):
        update(random_batch(32))
    lrs = {g["name"]: g["lr"] for g in update.optimizer.param_groups}
    assert lrs["value"] == pytest.approx(3e-4)  # constant
    assert lrs["actor"] == pytest.approx(1.5e-4)  # cosine: half-way at step 50 of 100
    assert lrs["reward_correction"] == pytest.approx(5e-4)
    decays = {g["name"]: g["weight_decay"] for g in update.optimizer.param_groups}
    assert decays == {"value": 1e-4, "actor": 0.0, "reward_correction": 1e-4}


def test_entropy_coefficient_is_learned_for_tanh_gaussian():
    update = build(stochastic=True)
    assert "entropy_coef" in [g["name"] for g in update.optimizer.param_groups]
    before = update.rgm_loss.log_entropy_coef.detach().clone()
    update(random_batch(64))
    assert not torch.equal(before, update.rgm_loss.log_entropy_coef.detach())


def test_bad_horizons_are_refused():
    lower = build().rgm_loss
    with pytest.raises(ValueError, match="total_steps"):
        RGMUpdate(lower, total_steps=0)


def test_no_host_sync_metrics_are_tensors():
    update = build()
    metrics = update(random_batch(32))
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in metrics.values())
    floats = RGMUpdate.metrics_to_floats(metrics)
    assert set(floats) == set(metrics.keys()) and all(isinstance(v, float) for v in floats.values())


def test_log_density_ratio_can_be_calibrated():
    from tensordict import TensorDict
    from tensordict.nn import TensorDictModule
    from torch import nn

    from torchrl_rgm.objectives import DiscriminatorLoss
    from torchrl_rgm.train import log_density_ratio

    torch.manual_seed(0)
    net = TensorDictModule(nn.Linear(3, 1), ["observation"], ["logit"])
    loss = DiscriminatorLoss(net)
    td = TensorDict({"observation": torch.randn(1000, 3) * 3}, [1000])
    raw = log_density_ratio(loss, td, chunk=300)
    calibrated = log_density_ratio(loss, td, chunk=300, normalize=True)
    assert abs(raw.exp().mean().item() - 1) > 0.1  # an arbitrary logit is not a calibrated ratio
    assert abs(calibrated.exp().double().mean().item() - 1) < 1e-4
    torch.testing.assert_close(calibrated - raw, (calibrated - raw)[:1].expand_as(raw))  # one shared shift
