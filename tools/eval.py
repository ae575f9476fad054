"""Thin wrapper: same as the `nasseg-eval` console script."""

from nasseg_tf.cli.eval import run

if __name__ == "__main__":
    run()
