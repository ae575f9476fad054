"""Architecture search: Auto-DeepLab bilevel search and decoding, DPC search.

``nasseg_tf.search.decode`` turns the architecture parameters (alpha, beta) into the
genotype value objects of :mod:`nasseg_tf.search_space.genotypes` (numpy only);
``nasseg_tf.search.plots`` draws a decoded cell and network path.
"""
