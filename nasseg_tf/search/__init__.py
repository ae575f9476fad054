"""Architecture search, one wing per method.

* :mod:`nasseg_tf.search.autodeeplab` — Liu et al. 2019: the paper's mixed op and the
  per-edge search cell (``mixed_op``), the batched cell (``batched_cell``), the supernet
  (``supernet``: eq. 6, and eq. 7–8 implemented once), decoding (``decode``: top-2 +
  argmax, Viterbi), the search task and its entry point (``run``), pictures (``plots``).
* :mod:`nasseg_tf.search.dpc` — Chen et al. 2018: the feature cache (``cache``), the
  proxy task (``proxy``), oracles (``oracles``), objectives (``objectives``), the
  KerasTuner tuner (``tuner``), leaderboard (``leaderboard``), re-ranking and the random
  baseline (``rerank``), the entry point (``run``), pictures (``plots``).

What the searches search over (op tables, trellis topology, genotypes, DPC cells) lives
one floor down, in :mod:`nasseg_tf.search_space`.
"""
