"""Thin wrapper: same as the `nasseg-demo` console script."""

from nasseg_tf.cli.demo import run

if __name__ == "__main__":
    run()
