"""Thin wrapper: same as the `nasseg-predict` console script."""

from nasseg_tf.cli.predict import run

if __name__ == "__main__":
    run()
