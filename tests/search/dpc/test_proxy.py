"""The DPC proxy task: trials train DPC + logits on cached features and stop early."""

import gc
import json
import weakref

import keras
import numpy as np
import pytest

from layer_checks import check_layer
from proxy_helpers import CELL
from nasseg_tf import internals
from nasseg_tf.cli import configs
from nasseg_tf.search.dpc.proxy import ProxyConfig, ProxyHead, run_proxy_trial

# End-to-end runs, subprocesses or graph-heavy models: not in `make test-fast`.
pytestmark = pytest.mark.e2e


def _config(**kwargs):
    args = dict(steps=40, batch_size=4, filters=8, learning_rate=0.05,
                eval_batch_size=8, stop_if_trivial=False)
    args.update(kwargs)
    return ProxyConfig(**args)


def test_proxy_trial_learns_and_beats_the_constant_predictor(cache):
    result = run_proxy_trial(CELL, cache, _config())
    assert 0.0 <= result["miou"] <= 1.0 and np.isfinite(result["miou"])
    assert result["steps"] == 40 and not result["stopped_early"]
    assert [s for s, _ in result["history"]] == [13, 27, 40]
    losses = [loss for _, loss in result["loss_history"]]
    assert losses[-1] < losses[0]
    # trivial_miou is the majority-class (constant) predictor's mIoU on the same crops.
    assert result["miou"] > result["trivial_miou"] > 0
    assert result["cell"][0]["rate"] == [1, 1]
    json.dumps(result)  # JSON-ready for the tuner


def test_should_stop_ends_a_trial_at_the_first_checkpoint(cache):
    calls = []

    def should_stop(step, miou):
        calls.append((step, miou))
        return True

    result = run_proxy_trial(CELL, cache, _config(), should_stop=should_stop)
    assert result["stopped_early"] and result["stop_reason"] == "should_stop"
    assert result["steps"] == 13 and calls == result["history"] == [(13, result["miou"])]


def test_trivial_rule_stops_before_should_stop_is_asked(cache):
    calls = []
    result = run_proxy_trial(CELL, cache, _config(steps=6, stop_if_trivial=True,
                                                  trivial_margin=1.0),
                             should_stop=lambda *args: calls.append(args))
    assert result["stop_reason"] == "trivial" and result["steps"] == 2 and not calls


def test_trial_rejects_a_wrong_output_stride(cache):
    with pytest.raises(ValueError, match="output stride 4"):
        run_proxy_trial(CELL, cache, _config(output_stride=16))


def test_proxy_config_is_gin_configurable_as_proxy():
    configs.parse([], ["Proxy.steps = 90", "Proxy.filters = 16"])
    config = configs.get("proxy")
    assert (config.steps, config.filters, config.batch_size) == (90, 16, 8)
    assert config.eval_steps() == [30, 60]
    assert config.resolved_bn_momentum() == pytest.approx(1 - 10 / 90)
    assert ProxyConfig().resolved_bn_momentum() == pytest.approx(0.9997, abs=5e-5)
    with pytest.raises(ValueError, match="eval_fractions"):
        ProxyConfig(eval_fractions=(0.5, 1.0))


def test_proxy_head_passes_layer_checks():
    check_layer(lambda: ProxyHead(CELL, 3, (17, 17), filters=4, output_stride=8),
                (2, 3, 3, 5), (2, 17, 17, 3))
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
        ProxyHead(CELL, 3, (17, 17)))).output_size == (17, 17)


def test_a_finished_trial_releases_its_input_iterator(cache, monkeypatch):
    # Regression: a trial's compiled step captured its iterator; TensorFlow keeps traced
    # train-step graphs alive, so every trial's iterator (and tf.data threads) lived
    # until exit, whose teardown of them took minutes after a search.
    from tensorflow.python.data.ops import iterator_ops  # pylint: disable=import-outside-toplevel

    created, original = [], iterator_ops.OwnedIterator._create_iterator

    def create(self, *args, **kwargs):
        original(self, *args, **kwargs)
        created.append(weakref.ref(self._iterator_resource))

    monkeypatch.setattr(iterator_ops.OwnedIterator, "_create_iterator", create)
    run_proxy_trial(CELL, cache, _config(steps=3))
    gc.collect()
    assert created and all(ref() is None for ref in created)


def test_trials_leave_no_traced_graphs_behind(cache):
    # Regression (tensorflow/tensorflow#97697): each trial's traced train step stayed
    # alive in TensorFlow's gradient registry; a worker's memory grew with every trial
    # (3.3 MiB per trial at these sizes).
    from tensorflow.python.framework.func_graph import FuncGraph  # pylint: disable=import-outside-toplevel

    def live_graphs():
        gc.collect()
        return sum(isinstance(o, FuncGraph) for o in gc.get_objects())

    before = internals.custom_gradient_names()
    run_proxy_trial(CELL, cache, _config(steps=2))
    graphs = live_graphs()
    results = [run_proxy_trial(CELL, cache, _config(steps=2)) for _ in range(2)]
    assert internals.custom_gradient_names() == before
    assert live_graphs() == graphs
    assert results[0]["loss_history"] == results[1]["loss_history"]
