"""Export of trained models for serving: SavedModel (TF Serving version folders) and
TFLite / LiteRT, each with its ``nasseg_metadata.json``."""

from nasseg_tf.export.metadata import (METADATA_FILE, class_metadata, dataset_metadata,
                                       info_from_metadata, read_metadata)
from nasseg_tf.export.saved_model import (DEFAULT_MAX_PIXELS, export_saved_model,
                                          export_version, load_metadata, load_serving,
                                          next_version, resolve_export,
                                          serving_input_error, versions)

__all__ = [
    "DEFAULT_MAX_PIXELS", "METADATA_FILE", "class_metadata", "dataset_metadata",
    "export_saved_model", "export_version", "info_from_metadata", "load_metadata",
    "load_serving", "next_version", "read_metadata", "resolve_export",
    "serving_input_error", "versions",
]
