"""
RGM losses in your own trainer
==============================

The recipe is one way to train RGM. The method itself is two TorchRL
:class:`~torchrl.objectives.LossModule` s over TensorDicts, and this tutorial writes a plain TorchRL training
loop around them — a TorchRL replay buffer, the losses, torch optimisers — with nothing from the package's
own update class:

* :class:`~torchrl_rgm.objectives.DiscriminatorLoss` — expert against union, pre-trained then
  frozen; its logit is :math:`\\log d^E/d^D`;
* :class:`~torchrl_rgm.objectives.RGMLoss` — both levels on one batch: the DICE value and the weighted
  behaviour cloning of the actor (lower level) and the reward correction :math:`\\Delta r` (upper level),
  returned as ``loss_value``, ``loss_actor`` and ``loss_reward_correction`` the way TorchRL's ``SACLoss``
  returns ``loss_qvalue``, ``loss_actor`` and ``loss_alpha``.

Like every TorchRL loss, neither steps an optimiser: the loop below does.
"""

# %%
# Data
# ----
# The same small hopper datasets as :doc:`01_rgm_in_five_minutes` (built here if that tutorial has
# not run), with the reward negated. :func:`~torchrl_rgm.data.load_rgm_data` returns the union
# :math:`D` (z-scored, with absorbing states and an ``is_expert`` flag), the expert data
# :math:`D^E` and the initial observations :math:`\mu_0`.
import matplotlib.pyplot as plt
import torch

from torchrl_rgm.data import load_rgm_data
from torchrl_rgm.generation.build import build_missing, dataset_id
from torchrl_rgm.envs import evaluate, make_policy_fn
from torchrl_rgm.modules import make_actor, make_discriminator, make_reward_correction_network, make_value_network
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

from torchrl_rgm.objectives import DiscriminatorLoss, RGMLoss

torch.manual_seed(0)
NAMESPACE, ENV = "rgm-tutorial", "hopper"
build_missing(ENV, ["medium-replay", "expert"], scale=0.1, namespace=NAMESPACE)  # once; a tenth of the default sizes

data = load_rgm_data(dataset_id(ENV, "medium-replay", NAMESPACE), dataset_id(ENV, "expert", NAMESPACE),
                     n_expert_trajectories=1, reward="negated")
union = data.union.to_tensordict()  # memory-mapped on disk → in memory
print(union)

# %%
# The discriminator
# -----------------
# :func:`~torchrl_rgm.modules.make_discriminator` reads ``(observation, action)`` and writes one
# logit. The loss takes a TensorDict with an ``expert`` and a ``union`` batch; the gradient penalty
# is its own entry, so you decide how to weigh it (here, as the paper, simply added).
discriminator = make_discriminator(data.obs_dim, data.action_dim)
discriminator_loss = DiscriminatorLoss(discriminator, gradient_penalty=10.0)
optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
keys = discriminator.in_keys
expert_in, union_in = data.expert.select(*keys).to_tensordict(), union.select(*keys)
for step in range(500):
    batch = {"expert": expert_in[torch.randint(len(expert_in), (512,))],
             "union": union_in[torch.randint(len(union_in), (512,))]}
    out = discriminator_loss(batch)
    loss = out["loss_discriminator"] + out["loss_gradient_penalty"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 100 == 0 or step == 499:
        print(f"step {step:3d}  loss_discriminator {out['loss_discriminator'].item():.3f}  "
              f"gradient penalty {out['loss_gradient_penalty'].item():.3f}")
discriminator.requires_grad_(False)

# %%
# Freeze it and store :math:`\log d^E/d^D` once per transition. A discriminator trained with a
# gradient penalty is under-confident, so we shift the logit so that
# :math:`\mathbb{E}_D[d^E/d^D] = 1`, as a density ratio must
# (:func:`torchrl_rgm.train.log_density_ratio` with ``normalize=True`` does the same).
with torch.no_grad():
    log_ratio = discriminator_loss.log_density_ratio(union_in.clone())["log_density_ratio"]
print(f"before calibration: E_D[d^E/d^D] = {log_ratio.exp().mean():.2f}")
log_ratio = log_ratio - (torch.logsumexp(log_ratio.flatten(), 0) - torch.log(torch.tensor(float(log_ratio.numel()))))
union.set("log_density_ratio", log_ratio)
is_expert = union["is_expert"].squeeze(-1)
print(f"mean log d^E/d^D: expert transitions {log_ratio[is_expert].mean():+.2f}, "
      f"the others {log_ratio[~is_expert].mean():+.2f}")

# %%
# The loss
# --------
# :class:`~torchrl_rgm.objectives.RGMLoss` reads the value network :math:`V(s)`, the actor and (optionally)
# the correction network. Defaults are the paper's: KL divergence, :math:`\alpha = 0.5`,
# :math:`\gamma = 0.99`, ``res_scale = 3``. Its keys follow TorchRL's conventions — ``reward`` and ``done``
# are read under ``"next"`` — and its ``in_keys`` come from its networks; ``loss.set_keys(observation=...)``
# renames an entry for the loss and every network it calls.
value = make_value_network(data.obs_dim)
actor = make_actor(data.obs_dim, data.action_dim)  # deterministic; stochastic=True: tanh-Gaussian
correction = make_reward_correction_network(data.obs_dim, data.action_dim)
loss_module = RGMLoss(value, actor, correction)
print("RGMLoss reads", loss_module.in_keys)

# %%
# One optimiser per network, as in the paper: Adam for :math:`V` (weight decay 1e-4), the actor, and
# :math:`\Delta r`. The paper's :math:`\Delta r` learning rate, 3e-7, is meant for a million updates;
# we scale it to this loop's 1,500.
UPDATES = 1500
optimizers = {
    "value": torch.optim.Adam(value.parameters(), lr=3e-4, weight_decay=1e-4),
    "actor": torch.optim.Adam(actor.parameters(), lr=3e-4),
    "correction": torch.optim.Adam(correction.parameters(), lr=3e-7 * 1e6 / UPDATES, weight_decay=1e-4),
}

# %%
# Two TorchRL replay buffers: the union's transitions, and the initial observations :math:`\mu_0` (the
# value loss's :math:`(1-\gamma)\,\mathbb{E}_{\mu_0}[V(s_0)]` term). A batch is one draw of each.
# The loss writes nothing into the batch. Its terms are *gradient-isolated*: ``loss_value`` reaches only
# :math:`V`, ``loss_actor`` only the actor and ``loss_reward_correction`` only :math:`\Delta r`. Let us
# check that on one batch before relying on it.
BATCH = 512
transitions = TensorDictReplayBuffer(storage=LazyTensorStorage(len(union)), batch_size=BATCH)
transitions.extend(union)
starts = TensorDictReplayBuffer(storage=LazyTensorStorage(len(data.initial_observation)), batch_size=BATCH)
starts.extend(TensorDict({"initial_observation": data.initial_observation}, [len(data.initial_observation)]))


def sample():
    batch = transitions.sample()
    batch.set("initial_observation", starts.sample()["initial_observation"])
    return batch


batch = sample()
losses = loss_module(batch)
for name in ("loss_value", "loss_actor", "loss_reward_correction"):
    grads = torch.autograd.grad(losses[name], [*value.parameters(), *actor.parameters(), *correction.parameters()],
                                retain_graph=True, allow_unused=True)
    n_v, n_a = len(list(value.parameters())), len(list(actor.parameters()))
    reached = {net: any(g is not None and g.abs().sum() > 0 for g in part)
               for net, part in (("V", grads[:n_v]), ("actor", grads[n_v:n_v + n_a]), ("Δr", grads[n_v + n_a:]))}
    print(f"{name:<24} reaches {[net for net, yes in reached.items() if yes]}")

# %%
# So one backward of the sum gives every network exactly its own gradient. The loop:
history = []
for step in range(1, UPDATES + 1):
    metrics = loss_module(sample())
    total = metrics["loss_value"] + metrics["loss_actor"] + metrics["loss_reward_correction"]
    for opt in optimizers.values():
        opt.zero_grad()
    total.backward()
    for opt in optimizers.values():
        opt.step()
    if step % 100 == 0:
        history.append({k: metrics[k].item() for k in ("loss_value", "weight_expert", "weight_union",
                                                       "reward_correction_abs")})
        h = history[-1]
        if step % 300 == 0:
            print(f"update {step:4d}  loss_value {h['loss_value']:+.3f}  w on expert {h['weight_expert']:.2f}  "
                  f"w on the rest {h['weight_union']:.2f}  |Δr| {h['reward_correction_abs']:.2f}")

# %%
# The batch means of :math:`w` on the expert's transitions and on the others (every 100 updates):
# throughout, :math:`w` is several times larger on the expert's transitions — the visitation the lower
# level optimises leans towards the expert's, although the reward it was given points away from it.
steps = [100 * (i + 1) for i in range(len(history))]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(steps, [h["weight_expert"] for h in history], label="w on expert transitions")
ax.plot(steps, [h["weight_union"] for h in history], label="w on the others")
ax.set(xlabel="update", ylabel="batch mean of w", yscale="log")
ax.legend()
fig.tight_layout()

# %%
# Evaluate
# --------
# :func:`~torchrl_rgm.envs.make_policy_fn` turns the actor into a function of raw observations
# (it normalises them with the data's statistics); :func:`~torchrl_rgm.envs.evaluate` runs it in
# batched gymnasium ``Hopper-v5`` environments and returns the undiscounted returns.
returns = evaluate(make_policy_fn(actor, data.normalize_observation), ENV, episodes=5, num_envs=5, seed=100_000)
scores = data.normalized_score(returns)
first = (union["step"].reshape(-1) == 0) & ~union["absorbing"].reshape(-1) & ~is_expert
union_score = data.normalized_score(union["episode_return"].reshape(-1)[first].numpy()).mean()
print(f"returns {returns.round(0)} → normalised score {scores.mean():.1f} ± {scores.std():.1f} "
      f"(the union's own episodes: {union_score:.1f}; the expert: 100)")

# %%
# In the library
# --------------
# :class:`~torchrl_rgm.train.RGMUpdate` is this loop's body as one object: the same loss in one
# pass, one fused Adam with a parameter group per network, cosine schedules for the actor and
# :math:`\Delta r`, no host synchronisation, and optionally :func:`torch.compile`:
#
# .. code-block:: python
#
#    from torchrl_rgm.train import RGMUpdate
#    update = RGMUpdate(loss_module, correction_lr=3e-7 * 1e6 / UPDATES, total_steps=UPDATES, compile=True)
#    metrics = update(sample())
