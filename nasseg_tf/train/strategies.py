"""``tf.distribute`` strategies by name (a registry; gin / flags pick one).

* ``default`` — no distribution (one device);
* ``mirrored`` — all local GPUs (or ``num_gpus`` of them), or ``num_cpu_devices``
  logical CPUs when there is no GPU (the multi-device code path, testable on a laptop);
* ``multi_worker`` — ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``;
* ``tpu`` — ``TPUStrategy`` (``tpu_address`` or the environment's TPU).

A strategy never silently gets fewer replicas than asked for: TensorFlow can only split
the CPU into logical devices before its runtime starts, so the ``mirrored`` factory
configures the devices before anything touches the runtime (it lists *physical*
devices, which does not start it) and raises :class:`StrategyError` when the
requested replica count cannot be had. :func:`describe` says what a strategy trains
with; the training and search runs log it and record it in ``run_info.json``.
"""

import tensorflow as tf

_STRATEGIES = {}


class StrategyError(ValueError):
    """The requested strategy or replica count cannot be had in this process."""


def register_strategy(name):
    def wrap(fn):
        _STRATEGIES[name] = fn
        return fn
    return wrap


def list_strategies():
    return sorted(_STRATEGIES)


def make_strategy(name="default", **kwargs):
    """Builds a strategy by name; an unknown name lists the known ones."""
    try:
        factory = _STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known strategies: "
                         f"{', '.join(list_strategies())}") from None
    return factory(**kwargs)


def configure_cpu_devices(num_cpu_devices):
    """Splits the physical CPU into ``num_cpu_devices`` logical devices.

    Must run before TensorFlow's runtime starts (before the first op, device listing
    of *logical* devices, or variable); afterwards the split in force cannot change.

    Raises:
      StrategyError: if the runtime already runs with a different CPU split.
    """
    if num_cpu_devices < 1:
        raise StrategyError(f"num_cpu_devices must be >= 1, got {num_cpu_devices}")
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    have = len(current) if current else 1
    if have == num_cpu_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
    except RuntimeError as e:
        raise StrategyError(
            f"cannot split the CPU into {num_cpu_devices} devices: TensorFlow's runtime "
            f"already started in this process with {have} CPU device(s) ({e}). Build "
            "the strategy before running any TensorFlow op, or set num_cpu_devices to "
            f"{have}.") from None


def describe(strategy):
    """``{"strategy": class name, "replicas": n, "devices": [...]}`` for logs/records."""
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):  # the default strategy has no device list
        devices = []
    return {"strategy": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync),
            "devices": [str(d) for d in devices]}


@register_strategy("default")
def _default(**_):
    return tf.distribute.get_strategy()


@register_strategy("mirrored")
def _mirrored(num_cpu_devices=2, num_gpus=None, **_):
    """All local GPUs (or the first ``num_gpus``); without GPUs, logical CPUs.

    Args:
      num_cpu_devices: replicas on a machine without GPU (the CPU is split).
      num_gpus: GPU replicas required (None: every visible GPU; on a machine without
        GPU, None falls back to CPUs and any positive number is an error).
    """
    gpus = tf.config.list_physical_devices("GPU")  # does not start the runtime
    if num_gpus is not None:
        if num_gpus < 1 or num_gpus > len(gpus):
            raise StrategyError(f"mirrored: num_gpus={num_gpus} asked for, but this "
                                f"machine has {len(gpus)} visible GPU(s)")
    if gpus:
        wanted = len(gpus) if num_gpus is None else num_gpus
        devices = [f"/gpu:{i}" for i in range(wanted)]
    else:
        wanted = int(num_cpu_devices)
        configure_cpu_devices(wanted)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:wanted]
    strategy = tf.distribute.MirroredStrategy(devices)
    if strategy.num_replicas_in_sync != wanted:
        raise StrategyError(f"mirrored: asked for {wanted} replicas, TensorFlow gave "
                            f"{strategy.num_replicas_in_sync} ({devices})")
    return strategy


@register_strategy("multi_worker")
def _multi_worker(**_):
    return tf.distribute.MultiWorkerMirroredStrategy()


@register_strategy("tpu")
def _tpu(tpu_address="", **_):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
