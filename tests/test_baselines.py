"""The baselines' update steps: each does what its algorithm is for, on problems with a known answer."""
import pytest
import torch
from tensordict import TensorDict
from torch.nn import functional as F

from torchrl_rgm.baselines import IQLUpdate, TD3BCUpdate, WeightedBCUpdate, make_qvalue_network
from torchrl_rgm.modules import make_actor, make_value_network
from torchrl_rgm.train import BCUpdate

OBS, ACT, H = 4, 2, (64, 64)


def bandit_batch(n=256, seed=0, done=True):
    """One-step problem: uniform random actions, reward peaked at a*(s) = 0.5·tanh(s[:2])."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, OBS, generator=g)
    a = torch.rand(n, ACT, generator=g) * 2 - 1
    best = 0.5 * torch.tanh(s[:, :ACT])
    r = -((a - best) ** 2).sum(-1, keepdim=True) * 4
    return TensorDict({"observation": s, "action": a,
                       "next": {"observation": torch.randn(n, OBS, generator=g), "reward": r,
                                "done": torch.full((n, 1), done)}}, [n])


def action_error(actor, stochastic=False):
    td = bandit_batch(512, seed=99)
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        a = actor(td.select("observation"))["action"]
    return ((a - 0.5 * torch.tanh(td["observation"][:, :ACT])) ** 2).sum(-1).mean().item()


@pytest.mark.parametrize("algo", ["iql", "td3bc"])
def test_reward_driven_baselines_find_the_rewarded_action_where_bc_cannot(algo):
    # The data's actions are uniform: BC learns their mean (0); an offline RL method that uses the
    # reward must move its actions towards the rewarded a*(s).
    torch.manual_seed(0)
    actor = make_actor(OBS, ACT, stochastic=algo == "iql", hidden=H)
    q = make_qvalue_network(OBS, ACT, H)
    if algo == "iql":
        update = IQLUpdate(actor, q, make_value_network(OBS, H), temperature=10.0, expectile=0.9, lr=1e-3,
                           total_steps=10_000)
    else:
        update = TD3BCUpdate(actor, q, alpha=10.0, actor_lr=1e-3, critic_lr=1e-3, total_steps=10_000)
    bc_actor = make_actor(OBS, ACT, stochastic=algo == "iql", hidden=H)
    bc = BCUpdate(bc_actor, lr=1e-3, total_steps=10_000, stochastic=algo == "iql")
    for i in range(600):
        batch = bandit_batch(seed=i)
        update(batch)
        bc(batch)
    assert action_error(actor) < 0.5 * action_error(bc_actor)


def test_td3bc_target_is_the_reward_where_done_and_bootstraps_elsewhere():
    # `done` in our buffers means terminated: no bootstrap there (TorchRL reads ("next", "terminated")).
    torch.manual_seed(0)
    actor = make_actor(OBS, ACT, hidden=H)
    update = TD3BCUpdate(actor, make_qvalue_network(OBS, ACT, H), total_steps=10)
    from torchrl_rgm.baselines import _td_batch

    for done in (True, False):
        batch = bandit_batch(32, done=done)
        out = update.loss(_td_batch(batch))
        target, reward = out["target_value"], batch["next", "reward"].squeeze(-1)
        if done:
            torch.testing.assert_close(target, reward)
        else:
            assert (target - reward).abs().min() > 0


def test_td3bc_delays_the_actor_and_the_targets():
    torch.manual_seed(0)
    actor = make_actor(OBS, ACT, hidden=H)
    update = TD3BCUpdate(actor, make_qvalue_network(OBS, ACT, H), policy_delay=2, total_steps=10)
    snap = lambda: ([p.detach().clone() for p in actor.parameters()],  # noqa: E731
                    [p.detach().clone() for p in update.loss.target_qvalue_network_params.values(True, True)])
    a0, t0 = snap()
    update(bandit_batch(seed=1))
    a1, t1 = snap()
    assert all(torch.equal(x, y) for x, y in zip(a0, a1)) and all(torch.equal(x, y) for x, y in zip(t0, t1))
    update(bandit_batch(seed=2))
    a2, t2 = snap()
    assert any(not torch.equal(x, y) for x, y in zip(a1, a2)) and any(not torch.equal(x, y) for x, y in zip(t1, t2))


def test_iql_targets_are_polyak_averages_of_the_critics():
    torch.manual_seed(0)
    actor = make_actor(OBS, ACT, stochastic=True, hidden=H)
    update = IQLUpdate(actor, make_qvalue_network(OBS, ACT, H), make_value_network(OBS, H), tau=0.1, total_steps=10)
    target = [p.detach().clone() for p in update.loss.target_qvalue_network_params.values(True, True)]
    update(bandit_batch())
    online = list(update.loss.qvalue_network_params.values(True, True))
    for t_old, t_new, q in zip(target, update.loss.target_qvalue_network_params.values(True, True), online):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * q.detach())


@pytest.mark.parametrize("algo", ["iql", "td3bc", "dwbc"])
def test_state_dict_resume_equals_uninterrupted(algo):
    def make():
        torch.manual_seed(0)
        actor = make_actor(OBS, ACT, stochastic=algo == "iql", hidden=H)
        if algo == "iql":
            return actor, IQLUpdate(actor, make_qvalue_network(OBS, ACT, H), make_value_network(OBS, H), total_steps=20)
        if algo == "td3bc":
            return actor, TD3BCUpdate(actor, make_qvalue_network(OBS, ACT, H), total_steps=20)
        return actor, WeightedBCUpdate(actor, total_steps=20)

    def batch(i):
        b = bandit_batch(64, seed=i)
        b["log_density_ratio"] = torch.randn(64, 1, generator=torch.Generator().manual_seed(i))
        return b

    # Uninterrupted: 3 updates, then 4 more.
    actor_a, a = make()
    for i in range(3):
        a(batch(i))
    torch.manual_seed(123)  # TD3+BC's target noise draws from the global generator
    for i in range(3, 7):
        a(batch(i))
    # Interrupted after 3: state saved, a fresh process (other weights) loads it and goes on.
    actor_b, b = make()
    for i in range(3):
        b(batch(i))
    state = {"update": b.state_dict(), "actor": actor_b.state_dict()}
    actor_c, c = make()
    with torch.no_grad():
        for p in actor_c.parameters():
            p.add_(1.0)
    actor_c.load_state_dict(state["actor"])
    c.load_state_dict(state["update"])
    torch.manual_seed(123)
    for i in range(3, 7):
        c(batch(i))
    for x, y in zip(actor_a.parameters(), actor_c.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_weighted_bc_follows_the_discriminator():
    # Half the transitions act +0.5 and the discriminator favours them; the other half act −0.5.
    torch.manual_seed(0)
    n = 256
    s = torch.randn(n, OBS)
    good = torch.arange(n) % 2 == 0
    a = torch.where(good[:, None], 0.5, -0.5).expand(n, ACT).clone()
    log_ratio = torch.where(good, 3.0, -3.0)[:, None]
    batch = TensorDict(observation=s, action=a, log_density_ratio=log_ratio, batch_size=[n])
    actor, plain = make_actor(OBS, ACT, hidden=H), make_actor(OBS, ACT, hidden=H)
    update, bc = WeightedBCUpdate(actor, lr=1e-3, total_steps=1000), BCUpdate(plain, lr=1e-3, total_steps=1000)
    for _ in range(300):
        update(batch)
        bc(batch)
    with torch.no_grad():
        assert actor(batch.select("observation"))["action"].mean() > 0.4
        assert plain(batch.select("observation"))["action"].mean().abs() < 0.1


def test_weighted_bc_loss_is_the_normalised_clipped_weighted_mean():
    torch.manual_seed(0)
    actor = make_actor(OBS, ACT, hidden=H)
    update = WeightedBCUpdate(actor, weight_clip=5.0)
    b = bandit_batch(64)
    b["log_density_ratio"] = torch.linspace(-4, 4, 64)[:, None]
    loss, _ = update._compute(b)
    w = b["log_density_ratio"].squeeze(-1).exp().clamp(max=5.0)
    w = w / w.mean()
    with torch.no_grad():
        per = F.mse_loss(actor(b.select("observation"))["action"], b["action"], reduction="none").mean(-1)
    torch.testing.assert_close(loss.detach(), (w * per).mean())
    with pytest.raises(ValueError, match="weight_clip must be > 0"):
        WeightedBCUpdate(actor, weight_clip=0)
