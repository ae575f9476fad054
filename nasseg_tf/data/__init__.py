"""Data layer: dataset registry, DeepLab TFRecords, converters, demo data, tf.data.

TensorFlow is used here (not in the layers/models, which speak ``keras.ops`` only).
"""

from nasseg_tf.data.build_data import Converter
from nasseg_tf.data.build_data import ConversionError
from nasseg_tf.data.build_data import SourceExample
from nasseg_tf.data.build_data import build_tfrecords
from nasseg_tf.data.build_data import get_converter
from nasseg_tf.data.build_data import list_converters
from nasseg_tf.data.build_data import register_converter
from nasseg_tf.data.datasets import DatasetInfo
from nasseg_tf.data.datasets import DescriptionError
from nasseg_tf.data.datasets import get_dataset_info
from nasseg_tf.data.datasets import list_datasets
from nasseg_tf.data.datasets import load_description
from nasseg_tf.data.datasets import make_description
from nasseg_tf.data.datasets import register_dataset
from nasseg_tf.data.datasets import write_description
from nasseg_tf.data.demo import ensure_demo_dataset
from nasseg_tf.data.demo import generate_demo_example
from nasseg_tf.data.pipeline import MEAN_PIXEL
from nasseg_tf.data.pipeline import build_dataset
from nasseg_tf.data.tfrecord import RecordError
from nasseg_tf.data.tfrecord import ShardedRecordWriter
from nasseg_tf.data.tfrecord import check_tfrecord_files
from nasseg_tf.data.tfrecord import example_from_arrays
from nasseg_tf.data.tfrecord import make_example
from nasseg_tf.data.tfrecord import parse_example
from nasseg_tf.data.tfrecord import validate_records
from nasseg_tf.data.tfrecord import write_sharded

__all__ = [
    "Converter",
    "ConversionError",
    "DatasetInfo",
    "DescriptionError",
    "MEAN_PIXEL",
    "RecordError",
    "ShardedRecordWriter",
    "SourceExample",
    "build_dataset",
    "build_tfrecords",
    "check_tfrecord_files",
    "ensure_demo_dataset",
    "example_from_arrays",
    "generate_demo_example",
    "get_converter",
    "get_dataset_info",
    "list_converters",
    "list_datasets",
    "load_description",
    "make_description",
    "make_example",
    "parse_example",
    "register_converter",
    "register_dataset",
    "validate_records",
    "write_description",
    "write_sharded",
]
