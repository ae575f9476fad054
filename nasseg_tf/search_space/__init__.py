"""Search spaces: primitive tables and genotype value objects."""

from nasseg_tf.search_space.genotypes import (CellGenotype, Edge, GenotypeError,
                                              NetworkGenotype, from_official,
                                              load_genotype, published_genotypes,
                                              to_official, validate_path)
from nasseg_tf.search_space.primitives import PRIMITIVES
from nasseg_tf.search_space.dpc import (DPCBranch, DPCCell, DPCSearchSpace, load_dpc_cell,
                                        published_dpc_cells)
