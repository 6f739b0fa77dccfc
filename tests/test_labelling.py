"""SEABO's and OTR's reward labels against independent computations: brute-force nearest neighbours, POT's exact
optimal transport, and the plans of cases small enough to solve by hand."""
import numpy as np
import ot
import pytest
import torch

from torchrl_rgm import labelling


def _sas(rng, n, obs_dim=5, action_dim=3):
    return rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, size=(n, action_dim)), rng.normal(size=(n, obs_dim))


@pytest.mark.parametrize("k", [1, 3])
def test_seabo_reward_is_the_squashed_distance_to_the_kth_nearest_expert_transition(k):
    rng = np.random.default_rng(0)
    data, expert = _sas(rng, 400), _sas(rng, 60)
    reward = labelling.seabo_rewards(*map(torch.as_tensor, data), *map(torch.as_tensor, expert), alpha=2.0, beta=0.5, k=k)
    q, e = np.concatenate(data, 1), np.concatenate(expert, 1)
    brute = np.sort(np.sqrt(((q[:, None, :] - e[None]) ** 2).sum(-1)), axis=1)[:, k - 1]  # every pair's distance
    np.testing.assert_allclose(reward.numpy(), 2.0 * np.exp(-0.5 * brute / 3), rtol=1e-5)


def test_seabo_gives_the_expert_its_own_transitions_the_top_reward():
    rng = np.random.default_rng(1)
    expert = _sas(rng, 50)
    reward = labelling.seabo_rewards(*expert, *expert, alpha=1.0, beta=0.5)
    np.testing.assert_allclose(reward.numpy(), 1.0, atol=1e-6)
    others = labelling.seabo_rewards(*_sas(rng, 50), *expert, alpha=1.0, beta=0.5)
    assert (others < 0.99).all()


def test_seabo_refuses_mismatched_dimensions_and_too_many_neighbours():
    rng = np.random.default_rng(2)
    data, expert = _sas(rng, 10), _sas(rng, 4, obs_dim=6)
    with pytest.raises(ValueError, match="dimensions"):
        labelling.seabo_rewards(*data, *expert)
    with pytest.raises(ValueError, match="k=5 neighbours"):
        labelling.seabo_rewards(*data, *_sas(rng, 4), k=5)


def test_otr_step_costs_match_the_exact_transport_plan_when_the_regularisation_is_small():
    """With ε small against the gaps between costs, Sinkhorn's plan is POT's exact (network-simplex) plan."""
    rng = np.random.default_rng(3)
    episode, expert = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    costs = labelling.otr_step_costs(episode, expert, epsilon=1e-3, iterations=5000)
    cost = labelling._cosine_cost(episode, expert)
    exact = ot.emd(np.full(7, 1 / 7), np.full(7, 1 / 7), cost)
    np.testing.assert_allclose(costs, 7 * (exact * cost).sum(1), atol=5e-3)


def test_otr_of_the_expert_itself_in_shuffled_order_is_the_top_reward_at_every_step():
    """An episode visiting the expert's states (any order) is transported step to step: zero cost, reward alpha."""
    rng = np.random.default_rng(4)
    expert = rng.normal(size=(30, 6))
    perm = rng.permutation(30)
    reward = labelling.otr_rewards(expert[perm], np.zeros(30), expert, alpha=5.0, beta=5.0, epsilon=0.01)
    np.testing.assert_allclose(reward.numpy(), 5.0, rtol=2e-3)


def test_otr_aligns_each_episode_on_its_own_and_matches_the_formula():
    """Two interleaved episodes: each row's reward is alpha * exp(-beta * c / obs_dim), c from its own episode's
    coupling (POT's Sinkhorn run here independently, per episode)."""
    rng = np.random.default_rng(5)
    expert = rng.normal(size=(20, 4))
    near, far = expert[:12] + 0.05 * rng.normal(size=(12, 4)), -expert[:9]
    obs = np.empty((21, 4))
    episode = np.array([0, 1] * 9 + [0, 0, 0])
    obs[episode == 0], obs[episode == 1] = near, far
    reward = labelling.otr_rewards(obs, episode, expert, alpha=5.0, beta=5.0, epsilon=0.01).numpy()
    for ep, x in ((0, near), (1, far)):
        cost = labelling._cosine_cost(x, expert)
        plan = ot.sinkhorn(np.full(len(x), 1 / len(x)), np.full(20, 1 / 20), cost, 0.01, method="sinkhorn_log",
                           numItermax=100, stopThr=1e-9)
        c = len(x) * (plan * cost).sum(1)
        np.testing.assert_allclose(reward[episode == ep], 5.0 * np.exp(-5.0 * c / 4), rtol=1e-5)
    assert reward[episode == 0].mean() > reward[episode == 1].mean() + 1  # near the expert beats its mirror


def test_episode_slices_keep_row_order_and_the_return_range_scale_is_iqls():
    episode = np.array([3, 1, 3, 1, 1, 7])
    assert [list(s) for s in labelling.episode_slices(episode)] == [[0, 2], [1, 3, 4], [5]]
    reward = np.array([1.0, 2.0, 1.0, 2.0, 2.0, 0.5])  # returns: 2, 6, 0.5
    assert labelling.return_range_scale(reward, episode) == pytest.approx(1000 / 5.5)
    assert labelling.return_range_scale(np.ones(4), np.arange(4)) == 1.0


def test_otr_falls_back_to_the_log_domain_where_the_kernel_underflows():
    """With ε tiny, exp(-C/ε) underflows to 0 in the scaling form; the costs still equal the log-domain solver's."""
    rng = np.random.default_rng(6)
    episode, expert = rng.normal(size=(9, 4)), rng.normal(size=(11, 4))
    costs = labelling.otr_step_costs(episode, expert, epsilon=1e-4, iterations=200)
    cost = labelling._cosine_cost(episode, expert)
    plan = ot.sinkhorn(np.full(9, 1 / 9), np.full(11, 1 / 11), cost, 1e-4, method="sinkhorn_log", numItermax=200,
                       stopThr=1e-9, warn=False)
    assert np.isfinite(costs).all()
    np.testing.assert_allclose(costs, 9 * (plan * cost).sum(1), rtol=1e-6)
