"""Export of trained models for serving."""

from nasseg_tf.export.saved_model import (DEFAULT_MAX_PIXELS, dataset_metadata,
                                          export_saved_model, load_metadata, load_serving,
                                          serving_input_error)
