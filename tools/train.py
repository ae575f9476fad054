"""Thin wrapper: same as the `nasseg-train` console script."""

from nasseg_tf.cli.train import run

if __name__ == "__main__":
    run()
