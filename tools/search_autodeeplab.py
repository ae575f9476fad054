"""Thin wrapper: same as the `nasseg-search-autodeeplab` console script."""

from nasseg_tf.cli.search_autodeeplab import run

if __name__ == "__main__":
    run()
