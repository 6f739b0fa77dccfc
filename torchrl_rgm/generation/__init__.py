"""Dataset generation, apart from loading (:mod:`torchrl_rgm.data`): the gymnasium MuJoCo environments and their
task families (:mod:`torchrl_rgm.generation.tasks`), behaviour-policy training
(:mod:`torchrl_rgm.generation.behaviour`), the Minari dataset builder (:mod:`torchrl_rgm.generation.build`) and
the scripted robomimic Lift/Can generator (:mod:`torchrl_rgm.generation.robomimic_build`)."""
__all__: list[str] = []
