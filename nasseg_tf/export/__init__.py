"""Export of trained models for serving."""

from nasseg_tf.export.saved_model import (dataset_metadata, export_saved_model,
                                          load_metadata, load_serving)
