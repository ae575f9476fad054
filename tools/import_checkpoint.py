"""Thin wrapper: same as the `nasseg-import-checkpoint` console script."""

from nasseg_tf.cli.import_checkpoint import run

if __name__ == "__main__":
    run()
