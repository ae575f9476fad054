"""Command-line entry points (thin absl wrappers around library functions).

Importing this package quiets TensorFlow's C++ start-up logging (CUDA probing etc.)
unless the user set ``TF_CPP_MIN_LOG_LEVEL`` already; Python errors still surface.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
