"""``tf.distribute`` strategies by name (a registry; gin / flags pick one).

* ``default`` — no distribution (one device);
* ``mirrored`` — all local GPUs, or ``num_cpu_devices`` logical CPUs when there is no
  GPU (the multi-device code path, testable on a laptop);
* ``multi_worker`` — ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``;
* ``tpu`` — ``TPUStrategy`` (``tpu_address`` or the environment's TPU).
"""

import tensorflow as tf

_STRATEGIES = {}


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

    Must run before TensorFlow initialises its devices; returns False if too late.
    """
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == num_cpu_devices:
        return True
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
        return True
    except RuntimeError:
        return False


@register_strategy("default")
def _default(**_):
    return tf.distribute.get_strategy()


@register_strategy("mirrored")
def _mirrored(num_cpu_devices=2, **_):
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    configure_cpu_devices(num_cpu_devices)
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")][:num_cpu_devices]
    return tf.distribute.MirroredStrategy(cpus)


@register_strategy("multi_worker")
def _multi_worker(**_):
    return tf.distribute.MultiWorkerMirroredStrategy()


@register_strategy("tpu")
def _tpu(tpu_address="", **_):
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
