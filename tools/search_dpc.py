"""Thin wrapper: same as the `nasseg-search-dpc` console script."""

from nasseg_tf.cli.search_dpc import run

if __name__ == "__main__":
    run()
