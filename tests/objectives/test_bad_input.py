"""Bad input: one error naming the problem and the accepted values, at construction or first call."""
import pytest

from torchrl_rgm.modules import make_actor, make_reward_correction_network, make_value_network
from torchrl_rgm.objectives import RGMLoss

from ..conftest import ACT, OBS, random_batch


@pytest.fixture
def nets():
    return (
        make_value_network(OBS, hidden=(8,)),
        make_actor(OBS, ACT, hidden=(8,)),
        make_reward_correction_network(OBS, ACT, hidden=(8,)),
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"divergence": "hellinger"}, "Unknown divergence 'hellinger'.*chi2.*kl"),
        ({"alpha": 0.0}, "alpha must be a finite number > 0"),
        ({"alpha": -1.0}, "alpha must be a finite number > 0"),
        ({"alpha": float("nan")}, "alpha"),
        ({"res_scale": -0.1}, "res_scale must be a finite number ≥ 0"),
        ({"gamma": 1.0}, r"gamma must lie in the open interval \(0, 1\)"),
        ({"gamma": 0.0}, r"gamma must lie in the open interval \(0, 1\)"),
        ({"advantage_clip": 0.0}, "advantage_clip"),
    ],
)
def test_bad_hyper_parameters_fail_at_construction(nets, kwargs, match):
    value, actor, correction = nets
    with pytest.raises(ValueError, match=match):
        RGMLoss(value, actor, correction, **kwargs)
    with pytest.raises(ValueError, match=match):
        RGMLoss(value, actor, **kwargs)


def test_bad_entropy_settings(nets):
    value, _, correction = nets
    stochastic = make_actor(OBS, ACT, stochastic=True, hidden=(8,))
    with pytest.raises(ValueError, match="entropy_coef must be"):
        RGMLoss(value, stochastic, entropy_coef="learned")
    assert RGMLoss(value, stochastic, entropy_coef=None).learn_entropy_coef is False


@pytest.mark.parametrize(
    "key,field",
    [("initial_observation", "initial_observation"), (("next", "done"), "done"), ("action", "action")],
)
def test_missing_key_names_the_key_and_the_fix(nets, key, field):
    value, actor, correction = nets
    td = random_batch(8)
    del td[key]
    with pytest.raises(KeyError, match=rf"tensor key '{field}'.*set_keys\({field}="):
        RGMLoss(value, actor, correction)(td)


def test_missing_log_density_ratio(nets):
    value, _, correction = nets
    td = random_batch(8)
    del td["log_density_ratio"]
    with pytest.raises(KeyError, match="log_density_ratio"):
        RGMLoss(value, make_actor(OBS, ACT, hidden=(8,)), correction)(td)
    assert "loss_value" in RGMLoss(value, make_actor(OBS, ACT, hidden=(8,)))(td).keys()  # without Δr it is not read


def test_renamed_keys_are_used(nets):
    value, actor, correction = nets
    loss = RGMLoss(value, actor, correction)
    td = random_batch(8)
    td["s0"] = td.pop("initial_observation")
    loss.set_keys(initial_observation="s0")
    assert "loss_value" in loss(td).keys()
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(initial_state="s0")
