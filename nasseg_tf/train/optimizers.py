"""Optimizers with a smaller compiled update.

:class:`FusedSGD` is Keras' SGD (same arguments, variables, checkpoints and arithmetic)
whose per-variable update on the TensorFlow backend is ONE op,
``ResourceApplyKerasMomentum`` — TensorFlow's kernel for exactly Keras' rule

    m ← momentum · m − lr · g;   w ← w + m
    (nesterov: w ← w + momentum · m − lr · g)

— instead of the 8 ops (three reads, two products, a difference, two assignments) that
Keras 3 traces per variable. In the Auto-DeepLab search step, with 2,504 weight
variables, that removes 15k of the compiled weight step's 131k nodes
(``bench/README.md``): a smaller graph traces, optimises and starts faster.

On other backends, or for options the kernel does not cover (plain SGD without
momentum), it is Keras' SGD unchanged. Tested equal to ``keras.optimizers.SGD``.
"""

import keras
import tensorflow as tf


class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with a one-op update per variable on TensorFlow."""

    def update_step(self, gradient, variable, learning_rate):
        if keras.backend.backend() != "tensorflow" or self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        if isinstance(variable, keras.Variable):
            variable = variable.value
        m = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=m.value.handle,
            lr=tf.cast(learning_rate, variable.dtype),
            grad=tf.cast(gradient, variable.dtype),
            momentum=tf.cast(self.momentum, variable.dtype),
            use_nesterov=bool(self.nesterov))
        return None
