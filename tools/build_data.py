"""Thin wrapper: same as the `nasseg-build-data` console script."""

from nasseg_tf.cli.build_data import run

if __name__ == "__main__":
    run()
