"""The model zoo: a registry of named model builders with the papers' figures.

    >>> from nasseg_tf import zoo
    >>> zoo.list_models()
    >>> model = zoo.build("autodeeplab_s", num_classes=19)

``build(name, num_classes, **overrides)`` forwards overrides to the builder (e.g.
``genotype="my_search/genotype.json"``, ``aspp_rates=(6, 12, 18)``); an unknown model
name or override raises an error listing what is known.
"""

import dataclasses
import inspect

from nasseg_tf.layers.common import BN_EPSILON, BN_MOMENTUM
from nasseg_tf.layers.heads import ASPP, DeepLabV3PlusDecoder
from nasseg_tf.models.autodeeplab import autodeeplab_backbone
from nasseg_tf.models.segmenter import build_segmenter
from nasseg_tf.search_space.genotypes import NetworkGenotype, load_genotype


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: how to build it and what the paper reports for it."""

    name: str
    builder: callable
    defaults: dict
    description: str
    paper: dict = dataclasses.field(default_factory=dict)


_REGISTRY = {}


def register_model(name, builder, defaults, description, paper=None):
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(name, builder, dict(defaults), description, paper or {})


def list_models():
    """Names of all zoo models, sorted."""
    return sorted(_REGISTRY)


def get_spec(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def build(name, num_classes=19, **overrides):
    """Builds zoo model ``name`` as a ``keras.Model`` (raw pixels in, logits out)."""
    spec = get_spec(name)
    allowed = set(inspect.signature(spec.builder).parameters) - {"num_classes", "name"}
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(
            f"{name}: unknown override(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    kwargs = {**spec.defaults, **overrides}
    return spec.builder(num_classes=num_classes, name=name, **kwargs)


# --------------------------------------------------------------------------------------
# Auto-DeepLab.


def build_autodeeplab(num_classes, name="autodeeplab", genotype="autodeeplab_cityscapes",
                      filter_multiplier=20, aspp_filters=256, aspp_rates=(12, 24, 36),
                      aspp_separable=False, decoder=True, decoder_filters=256,
                      decoder_separable=False, low_level_cell=2, dropout_rate=0.1,
                      bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON, path=None):
    """Auto-DeepLab: derived backbone + ASPP + DeepLabv3+ decoder (SPEC §2.5).

    Regular (not separable) convs in ASPP and decoder reproduce the paper's parameter
    counts (Table 2); the ASPP rates are not stated in the paper — (12, 24, 36) is the
    DeepLab convention at output stride 8. ``bn_momentum`` defaults to the official
    0.9997, which suits 1.5M-step training; short runs (the demo) need a smaller one
    for the moving statistics to settle. ``path`` replaces the genotype's network path
    (a list of levels), e.g. a shallower network for tests.
    """
    genotype = load_genotype(genotype)
    if path is not None:  # the genotype's cell on another network path
        genotype = NetworkGenotype(genotype.cell, tuple(path), genotype.name).validate()
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
    context = ASPP(aspp_filters, aspp_rates, separable=aspp_separable,
                   dropout_rate=dropout_rate, name="context", **bn)
    dec = (DeepLabV3PlusDecoder(decoder_filters, separable=decoder_separable,
                                name="decoder", **bn) if decoder else None)
    return build_segmenter(
        lambda x: autodeeplab_backbone(x, genotype, filter_multiplier, low_level_cell,
                                       **bn),
        context, dec, num_classes, name)


_ADL_PAPER = "Liu et al. 2019, Table 2 (Cityscapes val, 19 classes)"
for _suffix, _f, _params, _madds, _miou in (
        ("s", 20, 10.15e6, 333.25e9, 79.74),
        ("m", 32, 21.62e6, 460.93e9, 80.04),
        ("l", 48, 44.42e6, 695.03e9, 80.33)):
    register_model(
        f"autodeeplab_{_suffix}", build_autodeeplab, dict(filter_multiplier=_f),
        f"Auto-DeepLab-{_suffix.upper()} (F={_f}): published path + cell, ASPP, "
        "DeepLabv3+ decoder",
        dict(params=_params, madds=_madds, miou=_miou, source=_ADL_PAPER))
