"""Checkpoint contents keyed by Keras variable paths.

``tf.train.Checkpoint(model=keras_model)`` keys weights by layer position
(``_operations/17/...``) and leaves out Keras' random-seed state. Keying by variable path
(``cell_3/block0_left/sep0/depthwise/kernel``) keeps checkpoints readable and valid
across refactors that keep layer names, and includes the dropout seed state, so a
resumed run draws the same random numbers as an uninterrupted one.
"""


def variables_by_path(variables):
    """``{path: variable}``; raises if two variables share a path.

    Keras names random-seed generators with a process-wide counter
    (``seed_generator_7/seed_generator_state``), so their paths depend on what else the
    process built; they are keyed by their order among the model's seed states instead
    (``seed_generator_states/0``), which only depends on the architecture.
    """
    out = {}
    seeds = 0
    for var in variables:
        path = var.path
        if path.endswith("seed_generator_state"):
            path = f"seed_generator_states/{seeds}"
            seeds += 1
        if path in out:
            raise ValueError(f"two variables share the path {path!r}; give the layers "
                             "unique names")
        out[path] = var
    return out


def checkpoint_items(**objects):
    """``checkpoint_items(model=m, optimizer=o)`` → kwargs for ``tf.train.Checkpoint``."""
    return {name: variables_by_path(obj.variables) for name, obj in objects.items()}
