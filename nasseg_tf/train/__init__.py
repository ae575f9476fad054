"""Training: the one tf.distribute loop, losses, metrics, evaluation."""
