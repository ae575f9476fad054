"""Shared pieces of the DPC search tests: the space, a deterministic score, oracles."""

from nasseg_tf.search.dpc.objectives import SyntheticObjectiveConfig, synthetic_objective
from nasseg_tf.search.dpc.oracles import make_oracle
from nasseg_tf.search_space.dpc import DPCSearchSpace

SPACE = DPCSearchSpace()
SCORE = synthetic_objective(SPACE, SyntheticObjectiveConfig(seed=3)).score


def new_oracle(tmp_path, name="random", project="p", space=SPACE, **kwargs):
    """An oracle of ``name`` whose project folder is ``tmp_path/project``."""
    oracle = make_oracle(name, space, options=kwargs.pop("options", {}), **kwargs)
    oracle._set_project_dir(str(tmp_path), project)  # what a tuner does
    return oracle
