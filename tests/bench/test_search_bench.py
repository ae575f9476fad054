"""The search benchmark: Multiply-Add counting from graphs, and a toy-size run."""

import json
import os
import subprocess
import sys

import pytest
import keras
import tensorflow as tf

from nasseg_tf import counting
from nasseg_tf.bench.search_bench import graph_madds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e


def test_graph_madds_agrees_with_the_layer_counter_including_atrous_convs():
    inputs = keras.Input((17, 19, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=2, use_bias=False)(inputs)
    x = keras.layers.DepthwiseConv2D(5, padding="same", depth_multiplier=2)(x)
    x = keras.layers.Conv2D(4, 1)(x)
    x = keras.layers.Dense(6)(x)
    model = keras.Model(inputs, x)
    spec = tf.TensorSpec((2, 17, 19, 3), tf.float32)
    graph = tf.function(lambda t: model(t)).get_concrete_function(spec).graph
    expected = counting.count(model, (17, 19), batch_size=2).madds
    assert graph_madds(graph) == expected == 2 * 17 * 19 * (8 * 9 * 3 + 16 * 25 + 4 * 16 + 6 * 4)


def test_graph_madds_counts_batched_products():
    x = tf.TensorSpec((7, 6, 4), tf.float32)  # [pixels, groups, channels]
    w = tf.TensorSpec((6, 4, 5), tf.float32)  # per-group [channels, out]
    graph = tf.function(lambda a, b: (keras.ops.einsum("pgc,gcd->pgd", a, b),
                                      tf.matmul(tf.transpose(a, (1, 0, 2)), b))
                        ).get_concrete_function(x, w).graph
    assert graph_madds(graph) == 2 * 7 * 6 * 4 * 5


@pytest.mark.slow  # traces two supernet steps (make test-all)
def test_search_benchmark_reports_both_steps(tmp_path):
    # In a fresh process, as a user runs it: the memory breakdown is of that process
    # (inside a pytest worker other tests' memory would be the "runtime baseline").
    output = tmp_path / "search.json"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "benchmark.py"), "search",
                    "--crop=17x17", "--batch=2", "--filter_multiplier=2", "--num_layers=1",
                    "--num_classes=3", "--steps=1", "--partial_channels=2",
                    "--atrous_op=dilated_separable", f"--output={output}"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=600)
    result = json.loads(output.read_text())
    assert result["partial_channels"] == 2 and result["atrous_op"] == "dilated_separable"
    # The peak's breakdown adds up to the peak; the runtime alone is hundreds of MiB.
    # (Tracing this toy adds next to nothing: its graph part may be a few MiB either way.)
    parts = [result[f"rss_{k}_gib"] for k in ("runtime_baseline", "build", "graph",
                                              "activations")]
    assert abs(sum(parts) - result["peak_rss_gib"]) < 1e-6
    assert parts[0] > 0.1 and result["rss_after_steps_gib"] > parts[0]
    for part in ("weights", "arch"):
        assert 0 < result[f"{part}_trace_seconds"] < result[f"{part}_first_call_seconds"]
    for part in ("weights", "arch"):
        assert result[f"{part}_first_call_seconds"] > 0
        assert result[f"{part}_step_seconds_median"] > 0
        assert result[f"{part}_graph_nodes"] > 1000
    assert result["forward_madds"] > 0 and result["peak_rss_gib"] > 0
