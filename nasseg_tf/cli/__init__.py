"""Command-line entry points (thin absl wrappers around library functions).

TensorFlow's C++ logging is quieted for these tools by :mod:`nasseg_tf.startup` (it
has to happen before TensorFlow is imported, which ``import nasseg_tf`` does) unless
the user set ``TF_CPP_MIN_LOG_LEVEL``; Python warnings and errors still surface.
"""
