"""TensorDict keys shared by the data layer and the losses (TorchRL conventions)."""
OBS = "observation"
ACTION = "action"
NEXT_OBS = ("next", "observation")
REWARD = ("next", "reward")
DONE = ("next", "done")
TERMINATED = ("next", "terminated")
TRUNCATED = ("next", "truncated")
