"""The Auto-DeepLab cell search space: candidate op names (Liu et al. 2019, §3.1).

The order of :data:`PRIMITIVES` is the column order of the cell architecture
parameters alpha (one row per edge, one column per op).
"""

PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "atrous_conv_3x3",
    "atrous_conv_5x5",
)

ZERO_OP = "none"

#: Official TF1 DeepLab ("hnasnet") op names -> ours. Ours keep the paper's names;
#: the official ``separable_kxk_2`` is our ``sep_conv_kxk`` (two stacked separable convs).
OFFICIAL_TO_OURS = {
    "separable_3x3_2": "sep_conv_3x3",
    "separable_5x5_2": "sep_conv_5x5",
    "atrous_3x3": "atrous_conv_3x3",
    "atrous_5x5": "atrous_conv_5x5",
    "avg_pool_3x3": "avg_pool_3x3",
    "max_pool_3x3": "max_pool_3x3",
    "skip_connect": "skip_connect",
    "none": "none",
}
OURS_TO_OFFICIAL = {ours: official for official, ours in OFFICIAL_TO_OURS.items()}

#: Blocks per cell (B in the paper).
NUM_BLOCKS = 5
#: Resolution levels of the trellis: level i is downsample 4 * 2**i.
NUM_LEVELS = 4
DOWNSAMPLE_RATES = (4, 8, 16, 32)
