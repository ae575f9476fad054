"""Export of trained models for serving."""

from nasseg_tf.export.saved_model import export_saved_model, load_serving
