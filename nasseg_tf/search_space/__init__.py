"""Search spaces: op tables and trellis topology (``autodeeplab``), genotype value
objects (``genotypes``), the DPC space and cells (``dpc``), the published results
(``published/``: JSON beside their loaders)."""

from nasseg_tf.search_space.genotypes import (CellGenotype, Edge, GenotypeError,
                                              NetworkGenotype, from_official,
                                              load_genotype, published_genotypes,
                                              to_official, validate_path)
from nasseg_tf.search_space.autodeeplab import PRIMITIVES
from nasseg_tf.search_space.dpc import (DPCBranch, DPCCell, DPCSearchSpace, load_dpc_cell,
                                        published_dpc_cells)
