"""Auto-DeepLab search step cost on synthetic data (SPEC §6's table, our side).

Measures, in one process, exactly the compiled pieces the search loop runs
(:meth:`~nasseg_tf.train.loop.TrainLoop.compile_part`): the weight step (forward +
backward + SGD on trainA) and the architecture step (forward + backward + Adam on α, β
from trainB). For each: the first call (Python tracing + graph optimisation + the first
run) and the median of the following calls; plus the traced graph's node count, the
supernet's forward Multiply-Adds (:func:`graph_madds`) and the process' peak resident
memory with its breakdown (``rss_*_gib``: resident memory from ``/proc/self/statm``,
peak from ``getrusage``; the pieces are traced and run in the search loop's order):

* ``rss_runtime_baseline_gib``: TensorFlow and Keras imported and the runtime started
  (one scalar op), nothing built;
* ``rss_build_gib``: + the supernet, its optimisers' slots and the input pipelines;
* ``rss_graph_gib``: what tracing added (Python tracing of each piece, measured around
  it; the first call is timed in two parts, ``{part}_trace_seconds`` and the rest);
* ``rss_activations_gib``: peak − all of the above: graph optimisation and executor
  state of the first calls, the steps' activations and allocator caches;
* ``rss_after_steps_gib`` (resident after the timed steps): peak − after-steps is
  memory the steps freed again.
"""

import os
import resource
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf.search.autodeeplab.run import AutoDeepLabSearchTask, SearchConfig
from nasseg_tf.search.autodeeplab.supernet import AutoDeepLabSupernet
from nasseg_tf.train.loop import TrainLoop


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _rss_gib():
    """Resident memory now (Linux ``/proc/self/statm``), GiB."""
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def _timed(fn):
    t0 = time.perf_counter()
    for value in fn().values():
        float(value)  # blocks until the step has run
    return time.perf_counter() - t0


def _graph_nodes(part):
    graph = part.get_concrete_function().graph
    nodes = len(graph.get_operations())
    for function in graph.as_graph_def().library.function:
        nodes += len(function.node_def)
    return nodes


def _static(shape):
    dims = shape.as_list() if shape.rank is not None else None
    if dims is None or any(d is None for d in dims):
        raise ValueError(f"forward_madds: dynamic shape {shape}")
    return dims


def graph_madds(graph):
    """Multiply-Adds of the conv / matmul ops of a traced graph with static shapes.

    Counts ``Conv2D`` and ``DepthwiseConv2dNative`` as output elements × kernel taps ×
    input channels per group (taps on zero padding included, as the usual counters do)
    ``MatMul`` / ``BatchMatMul`` as output elements × contracted depth, and ``Einsum``
    as the product of the sizes of its distinct indices. TensorFlow runs atrous convs on CPU
    as SpaceToBatchND → conv → BatchToSpaceND; their output size is taken after
    BatchToSpaceND, so the count does not include the space-to-batch padding.
    Element-wise ops, pooling, resizing and batch norm are not counted.
    """
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "DepthwiseConv2dNative"):
            out = op.outputs[0]
            for consumer in out.consumers():
                if consumer.type == "BatchToSpaceND":
                    out = consumer.outputs[0]
            n, h, w, c_out = _static(out.shape)
            kh, kw, c_in_group, _ = _static(op.inputs[1].shape)
            taps = kh * kw * (c_in_group if op.type == "Conv2D" else 1)
            total += n * h * w * c_out * taps
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a = _static(op.inputs[0].shape)
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            depth = a[-2] if transposed else a[-1]
            total += int(np.prod(_static(op.outputs[0].shape))) * depth
        elif op.type == "Einsum":
            equation = op.get_attr("equation").decode()
            sizes = {}
            for labels, tensor in zip(equation.split("->")[0].split(","), op.inputs):
                sizes.update(zip(labels, _static(tensor.shape)))
            total += int(np.prod(list(sizes.values())))  # every distinct index once
    return total


#: Ops whose output shares its input's buffer (no memory of their own).
_VIEW_OPS = ("Reshape", "Identity", "ExpandDims", "Squeeze")


def saved_for_backward(forward, *specs, min_bytes=0):
    """Bytes of forward-pass tensors that the backward pass reads, by producing op type.

    ``forward(*tensors)`` runs a forward pass and returns ``(loss, variables)``; it is
    traced with ``specs`` together with ``tf.GradientTape().gradient(loss,
    variables)``. A tensor counts when an op of the gradient reads it (constants,
    inputs and variable reads excluded), once per buffer: views (reshape, identity)
    are followed back to the tensor that owns the memory. This is what a training
    step keeps alive between its forward and backward passes (TensorFlow frees a
    forward tensor when its last reader has run), the quantity the supernet's
    saved-activation levers lower. Returns ``{op type: bytes}``.
    """
    marks = {}

    def step(*tensors):
        with tf.GradientTape() as tape:
            loss, variables = forward(*tensors)
        marks["forward"] = len(tf.compat.v1.get_default_graph().get_operations())
        return tape.gradient(loss, variables)

    graph = tf.function(step, autograph=False).get_concrete_function(*specs).graph
    operations = graph.get_operations()
    forward_ops = set(operations[:marks["forward"]])
    owners = {}
    for op in operations[marks["forward"]:]:
        for tensor in op.inputs:
            while tensor.op.type in _VIEW_OPS:
                tensor = tensor.op.inputs[0]
            if tensor.op in forward_ops and tensor.op.type not in (
                    "Const", "Placeholder", "ReadVariableOp", "Shape"):
                owners[tensor.name] = tensor
    saved = {}
    for tensor in owners.values():
        size = int(np.prod(_static(tensor.shape))) * tensor.dtype.size
        if size >= min_bytes:
            saved[tensor.op.type] = saved.get(tensor.op.type, 0) + size
    return saved


def forward_madds(model, crop_size, batch_size):
    """Multiply-Adds of one training-mode forward pass (:func:`graph_madds`).

    Counted on the unrolled trellis: the ops of a loop body live in a function of
    their own, not in the traced graph, so looped layers are unrolled for the count.
    """
    spec = tf.TensorSpec((batch_size,) + tuple(crop_size) + (3,), tf.float32)
    loop_start = getattr(model, "loop_start", None)
    if loop_start is not None:
        model.loop_start = model.num_layers
    try:
        graph = tf.function(lambda x: model(x, training=True)).get_concrete_function(
            spec).graph
    finally:
        if loop_start is not None:
            model.loop_start = loop_start
    return graph_madds(graph)


def bench_search(crop_size=(65, 65), batch_size=2, filter_multiplier=4, num_layers=6,
                 num_classes=19, remat=False, cell_type="batched", loop_layers=True,
                 steps=3, seed=0,
                 count_madds=True, partial_channels=1, atrous_op="regular", fused_sgd=True):
    """Runs the benchmark; returns a JSON-ready dict."""
    float(tf.constant(1.0) + 1.0)  # start the runtime (devices, thread pools)
    rss_baseline = _rss_gib()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    h, w = crop_size

    def input_fn(ctx, start):
        del ctx, start
        images = rng.uniform(0, 255, (batch_size, h, w, 3)).astype("float32")
        labels = rng.integers(0, num_classes, (batch_size, h, w)).astype("int32")
        return tf.data.Dataset.from_tensors((images, labels)).repeat()

    cfg = SearchConfig(steps=1000, warmup_steps=0, batch_size=batch_size,
                       crop_size=tuple(crop_size), fused_sgd=fused_sgd)
    task = AutoDeepLabSearchTask(
        lambda: AutoDeepLabSupernet(num_classes, num_layers=num_layers,
                                    filter_multiplier=filter_multiplier, remat=remat,
                                    cell_type=cell_type, loop_layers=loop_layers,
                                    partial_channels=partial_channels,
                                    atrous_op=atrous_op, seed=seed, name="supernet"),
        input_fn, input_fn, cfg)
    strategy = tf.distribute.get_strategy()
    result = {"benchmark": "search", "crop_size": list(crop_size), "batch_size": batch_size,
              "filter_multiplier": filter_multiplier, "num_layers": num_layers,
              "num_classes": num_classes, "remat": remat, "cell_type": cell_type,
              "loop_layers": loop_layers, "partial_channels": partial_channels,
              "atrous_op": atrous_op, "fused_sgd": fused_sgd,
              "steps_timed": steps}
    with tempfile.TemporaryDirectory() as model_dir:
        loop = TrainLoop(task, strategy, model_dir, cfg.steps, progress=False)
        loop._setup()  # pylint: disable=protected-access
        iterators = tuple(iter(d) for d in task.make_inputs(strategy, 0))
        result["weight_variables"] = int(sum(np.prod(v.shape)
                                             for v in task.model.weight_variables))
        result["loop_start"] = int(task.model.loop_start)  # first looped layer (L: none)
        rss_build = _rss_gib()
        rss_graph = 0.0
        for part, inputs in task.step_parts("bilevel"):
            fn = loop.compile_part(iterators, part, inputs)
            before, t0 = _rss_gib(), time.perf_counter()
            fn.get_concrete_function()
            result[f"{part}_trace_seconds"] = time.perf_counter() - t0
            rss_graph += _rss_gib() - before
            result[f"{part}_first_call_seconds"] = (result[f"{part}_trace_seconds"]
                                                    + _timed(fn))
            result[f"{part}_graph_nodes"] = _graph_nodes(fn)
            times = [_timed(fn) for _ in range(steps)]
            result[f"{part}_step_seconds_median"] = statistics.median(times)
            result[f"{part}_step_seconds_all"] = times
        result["peak_rss_gib"] = _peak_rss_gib()
        result.update(rss_runtime_baseline_gib=rss_baseline,
                      rss_build_gib=rss_build - rss_baseline,
                      rss_graph_gib=rss_graph,
                      rss_activations_gib=result["peak_rss_gib"] - rss_build - rss_graph,
                      rss_after_steps_gib=_rss_gib())
        if count_madds:
            result["forward_madds"] = int(forward_madds(task.model, crop_size, batch_size))
    result.update(tensorflow=tf.__version__, keras=keras.__version__)
    return result
