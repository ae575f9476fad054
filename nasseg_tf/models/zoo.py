"""The model zoo: a registry of named model builders with the papers' figures.

    >>> from nasseg_tf.models import zoo
    >>> zoo.list_models()
    >>> model = zoo.build("autodeeplab_s", num_classes=19)

``build(name, num_classes, **overrides)`` forwards overrides to the builder (e.g.
``genotype="my_search/genotype.json"``, ``aspp_rates=(6, 12, 18)``); an unknown model
name or override raises an error listing what is known. The zoo is where architecture
*files* become value objects: a genotype or DPC cell given as a name or a JSON path is
loaded here once, and the layers below receive the value object.

:class:`ModelConfig` (gin ``Model``) is the model of a run: a zoo name, its overrides
and optionally a searched genotype or DPC cell, resolved once per run
(:meth:`ModelConfig.resolve`) into value objects that the run copies into its folder.
"""

import dataclasses
import inspect
import os

from nasseg_tf import fileio
from nasseg_tf.layers.common import (BN_EPSILON, BN_MOMENTUM, HEAD_BN_EPSILON,
                                     MOBILENET_V2_BN_MOMENTUM)
from nasseg_tf.layers.heads import ASPP, DeepLabV3PlusDecoder
from nasseg_tf.models.autodeeplab import autodeeplab_backbone
from nasseg_tf.models.segmenter import build_segmenter
from nasseg_tf.search_space.dpc import load_dpc_cell
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


def build(name, num_classes=19, weights=None, skip_logits=False, **overrides):
    """Builds zoo model ``name`` as a ``keras.Model`` (raw pixels in, logits out).

    Args:
      name: a zoo name (:func:`list_models`).
      num_classes: logits channels.
      weights: optional weights to load: an official TF1 DeepLab checkpoint (a
        ``model.ckpt-N`` prefix or its folder; a whole model, or an ImageNet backbone
        into the model's backbone — :func:`nasseg_tf.models.weights.
        load_official_checkpoint`, strict), or a Keras weights file
        (``.weights.h5``) or ``.keras`` model of the same architecture.
      skip_logits: with an official checkpoint, leave the logits at their initial
        weights (fine-tuning to another class count).
      **overrides: builder arguments (see the entry's builder).
    """
    spec = get_spec(name)
    allowed = set(inspect.signature(spec.builder).parameters) - {"num_classes", "name"}
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(
            f"{name}: unknown override(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    kwargs = {**spec.defaults, **overrides}
    model = spec.builder(num_classes=num_classes, name=name, **kwargs)
    if weights is not None:
        load_weights(model, weights, skip_logits=skip_logits)
    return model


def load_weights(model, path, skip_logits=False):
    """Loads ``path`` into a zoo model (see :func:`build`'s ``weights``); returns the
    import report (``loaded``, ``unused``, ...) for official checkpoints."""
    from nasseg_tf.models import weights as weights_lib  # pylint: disable=import-outside-toplevel

    path = os.fspath(path)
    if path.endswith(".weights.h5"):
        model.load_weights(path)
        return {"loaded": len(model.weights)}
    if path.endswith(".keras"):
        import keras  # pylint: disable=import-outside-toplevel

        saved = keras.saving.load_model(path, compile=False)
        model.set_weights(saved.get_weights())
        return {"loaded": len(model.weights)}
    return weights_lib.load_official_checkpoint(model, path, skip_logits=skip_logits)


def _default_numerics(name):
    """The ``numerics`` zoo entry ``name`` builds with by default (None: no option)."""
    if not name or name not in _REGISTRY:
        return None
    spec = _REGISTRY[name]
    parameter = inspect.signature(spec.builder).parameters.get("numerics")
    if parameter is None:
        return None
    return spec.defaults.get("numerics", parameter.default)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model of a run (gin ``Model``): zoo ``name`` with ``overrides``.

    ``genotype`` (a genotype name or a JSON path, e.g. a search's ``genotype.json``)
    is a shortcut for ``overrides['genotype']`` that keeps the other overrides of the
    gin file, so retraining a searched result is one binding:
    ``--gin_bindings="Model.genotype = 'runs/search/genotype.json'"``. With it, a
    ``path`` override is dropped: the genotype's own path is used. ``dpc_cell`` does
    the same for DPC models (a published cell name or a DPC search's cell JSON):
    ``--gin_bindings="Model.dpc_cell = 'runs/dpc/best_cell.json'"``.
    """

    GIN_NAME = "Model"
    #: Where :meth:`resolve` copies a run's architecture files (relative to the run).
    GENOTYPE_FILE = "genotype.json"
    DPC_CELL_FILE = "dpc_cell.json"

    name: str = None
    overrides: dict = None
    genotype: object = None
    dpc_cell: object = None

    def _architecture(self, base_dir=None):
        """``(overrides, genotype, dpc_cell)`` with architectures as value objects.

        Relative paths are looked up in ``base_dir`` first (a run folder names its
        own copies relative to itself), then in the working directory.
        """
        def located(spec):
            if (isinstance(spec, str) and base_dir and not os.path.isabs(spec)
                    and not fileio.is_remote(spec)):
                inside = os.path.join(base_dir, spec)
                if fileio.exists(inside):  # base_dir may be remote (gs://)
                    return inside
            return spec

        overrides = dict(self.overrides or {})
        genotype = self.genotype if self.genotype is not None else overrides.get("genotype")
        dpc_cell = self.dpc_cell if self.dpc_cell is not None else overrides.get("dpc_cell")
        if self.genotype is not None:
            overrides.pop("path", None)  # the searched genotype's own path
        overrides.pop("genotype", None)
        overrides.pop("dpc_cell", None)
        genotype = None if genotype is None else load_genotype(located(genotype))
        dpc_cell = None if dpc_cell is None else load_dpc_cell(located(dpc_cell))
        return overrides, genotype, dpc_cell

    def build(self, num_classes, base_dir=None):
        """The zoo model; relative architecture paths are looked up in ``base_dir``."""
        if not self.name:
            raise ValueError("Model.name is not set (a zoo model name, e.g. "
                             "'autodeeplab_s'; `nasseg-zoo list` lists them)")
        overrides, genotype, dpc_cell = self._architecture(base_dir)
        if genotype is not None:
            overrides["genotype"] = genotype
        if dpc_cell is not None:
            overrides["dpc_cell"] = dpc_cell
        return build(self.name, num_classes=num_classes, **overrides)

    def architecture(self, base_dir=None):
        """A JSON-able description of the architecture (zoo name, overrides, genotype
        and DPC cell configs, and the numerical conventions the entry builds with):
        what a checkpoint's fingerprint records."""
        overrides, genotype, dpc_cell = self._architecture(base_dir)
        return {"model": self.name, "overrides": overrides,
                "numerics": overrides.get("numerics", _default_numerics(self.name)),
                "genotype": None if genotype is None else genotype.to_config(),
                "dpc_cell": None if dpc_cell is None else dpc_cell.to_config()}

    def with_legacy_numerics(self):
        """This config with ``numerics='legacy'`` where the entry has the option and the
        config does not set it: the numerics of checkpoints written before the option
        existed (they carry no architecture record)."""
        overrides = dict(self.overrides or {})
        if "numerics" in overrides or _default_numerics(self.name) is None:
            return self
        return dataclasses.replace(self, overrides={**overrides, "numerics": "legacy"})

    def resolve(self, model_dir, write=True):
        """Loads the genotype / DPC cell once and copies them into ``model_dir``.

        Returns:
          ``(saved, loaded)``: ``saved`` names the copies relative to ``model_dir``
          (``genotype.json`` / ``dpc_cell.json``) — the config the run writes to its
          ``config.gin``; ``loaded`` holds the value objects themselves — the config
          the run builds its model from. ``write=False`` skips writing the copies (a
          worker of a run whose chief writes them).
        """
        overrides, genotype, dpc_cell = self._architecture()
        saved = loaded = dataclasses.replace(self, overrides=overrides or None,
                                             genotype=None, dpc_cell=None)
        if genotype is not None:
            if write:
                genotype.save(os.path.join(model_dir, self.GENOTYPE_FILE))
            saved = dataclasses.replace(saved, genotype=self.GENOTYPE_FILE)
            loaded = dataclasses.replace(loaded, genotype=genotype)
        if dpc_cell is not None:
            if write:
                dpc_cell.save(os.path.join(model_dir, self.DPC_CELL_FILE))
            saved = dataclasses.replace(saved, dpc_cell=self.DPC_CELL_FILE)
            loaded = dataclasses.replace(loaded, dpc_cell=dpc_cell)
        return saved, loaded


# --------------------------------------------------------------------------------------
# Numerics: the conventions of a model's arithmetic that its trained weights depend on.

#: Named sets of numerical conventions (``numerics=`` of the builders below):
#:
#: * ``official`` — the official TF1 DeepLab graph (SPEC §7, "Numerics of the official
#:   graph"): bilinear resizing with aligned corners everywhere (features, image
#:   pooling, decoder, logits); batch-norm epsilon 1e-3 in the backbone and 1e-5 in
#:   ASPP / DPC / decoder, decay 0.9997 (slim MobileNet-v2: 0.997); MobileNet-v2's
#:   strided convs with TensorFlow 'SAME' padding (Xception pads symmetrically in both).
#:   Official checkpoints loaded into such a model give the official outputs.
#: * ``legacy`` — this package before these options existed: half-pixel resizing,
#:   epsilon 1e-3 and decay 0.9997 everywhere, symmetric padding in MobileNet-v2. The
#:   override that gives runs trained before the change their numerics back when their
#:   model is rebuilt from the zoo (models saved with Keras keep theirs anyway).
NUMERICS = {
    "official": dict(align_corners=True, head_bn_epsilon=HEAD_BN_EPSILON,
                     mobilenet_bn_momentum=MOBILENET_V2_BN_MOMENTUM,
                     mobilenet_explicit_padding=False),
    "legacy": dict(align_corners=False, head_bn_epsilon=BN_EPSILON,
                   mobilenet_bn_momentum=BN_MOMENTUM, mobilenet_explicit_padding=True),
}


def resolve_numerics(numerics, backbone=None, bn_momentum=None, bn_epsilon=None):
    """The settings of a numerics name for one model.

    Args:
      numerics: a key of :data:`NUMERICS`.
      backbone: the backbone family (``mobilenet_v2`` has its own decay and padding).
      bn_momentum, bn_epsilon: when not None, used in every part instead (e.g. a small
        decay for short runs), as these overrides always did.

    Returns:
      ``dict(align_corners, backbone_bn, head_bn, mobilenet_explicit_padding)`` with
      ``*_bn`` the ``bn_momentum`` / ``bn_epsilon`` keyword arguments of each part.
    """
    if numerics not in NUMERICS:
        raise ValueError(f"unknown numerics {numerics!r}; known: {', '.join(NUMERICS)}")
    spec = NUMERICS[numerics]
    backbone_momentum = (spec["mobilenet_bn_momentum"] if backbone == "mobilenet_v2"
                         else BN_MOMENTUM)

    def bn(momentum, epsilon):
        return dict(bn_momentum=momentum if bn_momentum is None else float(bn_momentum),
                    bn_epsilon=epsilon if bn_epsilon is None else float(bn_epsilon))

    return dict(align_corners=spec["align_corners"],
                backbone_bn=bn(backbone_momentum, BN_EPSILON),
                head_bn=bn(BN_MOMENTUM, spec["head_bn_epsilon"]),
                mobilenet_explicit_padding=spec["mobilenet_explicit_padding"])


# --------------------------------------------------------------------------------------
# Auto-DeepLab.


def build_autodeeplab(num_classes, name="autodeeplab", genotype="autodeeplab_cityscapes",
                      filter_multiplier=20, aspp_filters=256, aspp_rates=(12, 24, 36),
                      aspp_separable=False, decoder=True, decoder_filters=256,
                      decoder_separable=False, low_level_cell=2, dropout_rate=0.1,
                      bn_momentum=None, bn_epsilon=None, path=None,
                      drop_path_keep_prob=1.0, numerics="official"):
    """Auto-DeepLab: derived backbone + ASPP + DeepLabv3+ decoder (SPEC §2.5).

    Regular (not separable) convs in ASPP and decoder reproduce the paper's parameter
    counts (Table 2); the ASPP rates are not stated in the paper — (12, 24, 36) is the
    DeepLab convention at output stride 8. ``numerics`` (see :data:`NUMERICS`): the
    official DeepLab framework that ran ``nas_hnasnet`` resizes with aligned corners
    everywhere (also in the backbone's up-steps and cells) and uses batch-norm epsilon
    1e-3 in hnasnet (SPEC §2.5) and 1e-5 in ASPP and decoder, decay 0.9997 — the
    default (not yet exact: the stride-2 ``atrous`` op resizes with half-pixel centres
    inside :mod:`nasseg_tf.layers.ops`); ``"legacy"`` gives the numerics of models
    trained before the option.
    ``bn_momentum`` / ``bn_epsilon`` set every part at once: the official decay 0.9997
    suits 1.5M-step training; short runs (the demo) need a smaller one for the moving
    statistics to settle. ``path`` replaces the genotype's network path (a list of
    levels), e.g. a shallower network for tests. ``drop_path_keep_prob`` < 1 turns on
    scheduled drop path in the cells (the paper retrains with it but does not state the
    probability; see :class:`~nasseg_tf.layers.cell.DerivedCell`).
    """
    genotype = load_genotype(genotype)
    if path is not None:  # the genotype's cell on another network path
        genotype = NetworkGenotype(genotype.cell, tuple(path), genotype.name).validate()
    settings = resolve_numerics(numerics, "hnasnet", bn_momentum, bn_epsilon)
    align_corners = settings["align_corners"]
    head_bn = settings["head_bn"]
    context = ASPP(aspp_filters, aspp_rates, separable=aspp_separable,
                   dropout_rate=dropout_rate, output_stride=genotype.output_stride,
                   align_corners=align_corners, name="context", **head_bn)
    dec = (DeepLabV3PlusDecoder(decoder_filters, separable=decoder_separable,
                                align_corners=align_corners, name="decoder", **head_bn)
           if decoder else None)
    return build_segmenter(
        lambda x: autodeeplab_backbone(x, genotype, filter_multiplier, low_level_cell,
                                       drop_path_keep_prob=drop_path_keep_prob,
                                       align_corners=align_corners,
                                       **settings["backbone_bn"]),
        context, dec, num_classes, name, align_corners=align_corners)


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


# --------------------------------------------------------------------------------------
# DeepLab with a DPC or ASPP context module on MobileNet-v2 / Xception (Chen et al. 2018).


def _mobilenet_v2(images, output_stride, depth_multiplier, explicit_padding, **bn):
    from nasseg_tf.models.mobilenet_v2 import mobilenet_v2_backbone  # pylint: disable=import-outside-toplevel
    return mobilenet_v2_backbone(images, output_stride=output_stride,
                                 depth_multiplier=depth_multiplier,
                                 explicit_padding=explicit_padding, **bn)


def _xception(depth):
    def backbone(images, output_stride, depth_multiplier, explicit_padding, **bn):
        # The official Xception pads its strided convs explicitly in any case.
        del explicit_padding
        from nasseg_tf.models.xception import xception_backbone  # pylint: disable=import-outside-toplevel
        if depth_multiplier != 1.0:
            raise ValueError(f"xception_{depth}: depth_multiplier is a MobileNet-v2 option")
        return xception_backbone(images, depth=depth, output_stride=output_stride, **bn)
    return backbone


BACKBONES = {"mobilenet_v2": _mobilenet_v2, "xception_65": _xception(65),
             "xception_71": _xception(71)}
CONTEXT_MODULES = ("dpc", "aspp")


def build_deeplab(num_classes, name="deeplab", backbone="mobilenet_v2", context="dpc",
                  dpc_cell="dpc_top1_cityscapes", output_stride=16, depth_multiplier=1.0,
                  context_filters=256, aspp_rates=(6, 12, 18), image_pooling=True,
                  pool_crop_size=None, dropout_rate=0.1, decoder=False,
                  decoder_filters=256, bn_momentum=None, bn_epsilon=None,
                  numerics="official", backbone_weights=None):
    """DeepLab on MobileNet-v2 / Xception with a DPC or ASPP context module.

    Args:
      backbone: ``mobilenet_v2``, ``xception_65`` or ``xception_71`` (atrous output
        stride 8 or 16).
      context: ``dpc`` (a :class:`DensePredictionCell` of ``dpc_cell``: a published
        name, a JSON path — e.g. a DPC search's ``best_cell.json`` — or a config
        list) or ``aspp`` (DeepLabv3+ ASPP with separable 3×3 branches).
      aspp_rates: ASPP rates at output stride 16; like the DPC rates they are
        multiplied by ``16 / output_stride`` (6, 12, 18 → 12, 24, 36 at OS 8). Empty:
        the 1×1 branch (and image pooling) only, as in the official MobileNet-v2
        DeepLabv3 models.
      image_pooling: ASPP's image-level branch.
      pool_crop_size: ``(H, W)`` of the training crop: the pooling windows of the DPC's
        pyramid pooling and of ASPP's image pooling are fixed from it, as in the
        official graph (``(crop − 1) // OS + 1`` for image pooling). None: windows
        derived from the feature size (global image pooling) — the same function when
        the input is the crop.
      decoder: add the DeepLabv3+ decoder (separable convs) on the backbone's OS-4
        feature, as the official Xception models do.
      depth_multiplier: MobileNet-v2 width.
      bn_momentum, bn_epsilon: None — each part's setting under ``numerics``; a
        number — that value in every part.
      numerics: ``official`` (default; the official TF1 graph's resizing, batch-norm
        epsilons and padding, so official checkpoints give the official outputs) or
        ``legacy`` (models trained before the option); see :data:`NUMERICS`.
      backbone_weights: ``"imagenet"`` — MobileNet-v2 only: Keras' ImageNet weights
        (``keras.applications.MobileNetV2``, downloaded by Keras on first use) in the
        backbone (:func:`nasseg_tf.models.weights.load_keras_mobilenet_v2`); official
        checkpoints go through ``zoo.build(..., weights=...)``.
    """
    # pylint: disable=import-outside-toplevel
    from nasseg_tf.layers.dpc import DensePredictionCell

    if backbone_weights not in (None, "imagenet"):
        raise ValueError(f"backbone_weights must be None or 'imagenet', got "
                         f"{backbone_weights!r}")
    if backbone_weights and backbone != "mobilenet_v2":
        raise ValueError("backbone_weights='imagenet' exists for the MobileNet-v2 backbone "
                         "(Keras ships no aligned Xception); load an official ImageNet "
                         "checkpoint with weights=... instead")

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    if context not in CONTEXT_MODULES:
        raise ValueError(f"unknown context module {context!r}; known: "
                         f"{', '.join(CONTEXT_MODULES)}")
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    settings = resolve_numerics(numerics, backbone, bn_momentum, bn_epsilon)
    align_corners = settings["align_corners"]
    head = dict(align_corners=align_corners, **settings["head_bn"])
    if context == "dpc":
        module = DensePredictionCell(load_dpc_cell(dpc_cell), context_filters, output_stride,
                                     pool_crop_size=pool_crop_size,
                                     dropout_rate=dropout_rate, name="context", **head)
    else:
        multiplier = 16 // output_stride
        module = ASPP(context_filters, tuple(r * multiplier for r in aspp_rates),
                      separable=True, image_pooling=image_pooling,
                      dropout_rate=dropout_rate, output_stride=output_stride,
                      pool_crop_size=pool_crop_size, name="context", **head)
    dec = (DeepLabV3PlusDecoder(decoder_filters, separable=True, name="decoder", **head)
           if decoder else None)
    model = build_segmenter(
        lambda x: BACKBONES[backbone](x, output_stride, depth_multiplier,
                                      settings["mobilenet_explicit_padding"],
                                      **settings["backbone_bn"]),
        module, dec, num_classes, name, align_corners=align_corners)
    if backbone_weights == "imagenet":
        import keras  # pylint: disable=import-outside-toplevel

        from nasseg_tf.models.weights import load_keras_mobilenet_v2

        load_keras_mobilenet_v2(model, keras.applications.MobileNetV2(
            weights="imagenet", include_top=False, alpha=depth_multiplier,
            input_shape=(224, 224, 3)))
    return model


_DPC_PAPER = ("Chen et al. 2018, Table 1 (Cityscapes val, OS 16; context module "
              "counted at 1025x2049 without the concat projection)")
for _name, _backbone, _context, _decoder, _paper in (
        ("mobilenetv2_aspp", "mobilenet_v2", "aspp", False,
         dict(context_params=0.25e6, context_madds=2.82e9, miou=73.97)),
        ("mobilenetv2_dpc", "mobilenet_v2", "dpc", False,
         dict(context_params=0.36e6, context_madds=3.00e9, miou=75.37)),
        ("xception71_aspp", "xception_71", "aspp", True,
         dict(context_params=1.59e6, context_madds=18.12e9, miou=80.25)),
        ("xception71_dpc", "xception_71", "dpc", True,
         dict(context_params=0.81e6, context_madds=6.84e9, miou=80.85,
              madds=502.07e9, madds_input_size=(1025, 2049))),
        ("xception65_aspp", "xception_65", "aspp", True, {})):
    _paper = dict(_paper)
    if _paper:
        _paper.update(source=_DPC_PAPER, context_input_size=(1025, 2049))
    if "madds" in _paper:
        # SPEC §3.4 assumed a 769x769 crop for the official zoo's 502.07B; our count
        # matches it at the full 1025x2049 frame (501.81B) and gives 143.1B at 769x769.
        _paper["source"] += ("; whole network 502.07B Multiply-Adds: official model "
                             "zoo, matched by the full 1025x2049 frame")
    register_model(
        _name, build_deeplab,
        dict(backbone=_backbone, context=_context, decoder=_decoder),
        f"{_backbone} OS 16 + {_context.upper()}"
        + (" + DeepLabv3+ decoder (OS 4)" if _decoder else "")
        + (" (published top-1 Cityscapes cell)" if _context == "dpc" else ""),
        _paper)

# The official MobileNet-v2 DeepLabv3 models (mobilenetv2_coco_cityscapes_trainfine,
# mobilenetv2_coco_voc_trainaug; SPEC §7): ASPP of image pooling + the 1×1 branch only
# (concat_projection 512 -> 256), no decoder. Trained at OS 16; the official evaluation
# also runs them at OS 8 (``output_stride=8``: the same weights).
register_model(
    "mobilenetv2_deeplabv3", build_deeplab,
    dict(backbone="mobilenet_v2", context="aspp", aspp_rates=(), decoder=False),
    "mobilenet_v2 OS 16 + ASPP of image pooling and 1x1 only (512->256 projection): "
    "the official MobileNet-v2 DeepLabv3 checkpoints",
    dict(miou=70.71, source="official DeepLab model zoo, "
         "mobilenetv2_coco_cityscapes_trainfine (Cityscapes val; SPEC §7)"))
