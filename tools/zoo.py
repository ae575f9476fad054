"""Thin wrapper: same as the `nasseg-zoo` console script."""

from nasseg_tf.cli.zoo_tool import run

if __name__ == "__main__":
    run()
