"""Thin wrapper: same as the `nasseg-export` console script."""

from nasseg_tf.cli.export import run

if __name__ == "__main__":
    run()
