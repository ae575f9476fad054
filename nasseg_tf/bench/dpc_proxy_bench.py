"""DPC proxy trials per hour: cached backbone features vs recomputing the backbone.

One process, the same cells, the same steps, the same head and recipe
(:func:`~nasseg_tf.search.dpc.proxy.train_and_score`), trials interleaved (cached,
recomputed, cached, ...) so that machine drift hits both alike:

* **cached**: :func:`~nasseg_tf.search.dpc.proxy.run_proxy_trial` on a
  :class:`~nasseg_tf.search.dpc.proxy.FeatureCache` (MobileNet-v2 features);
* **recompute**: the same DPC + logits on top of the same MobileNet-v2, frozen
  (``trainable=False``, inference-mode BN, no gradient into it) but run in every
  training and evaluation step on the image crops.

The recompute side is favoured: its crops are decoded once and held in memory (a real
uncached proxy would also read, decode and crop images every step). The cache's
one-time build (backbone on every crop, shards written and verified) is reported
separately, with the number of trials after which it has paid for itself.

A trial here is short (``steps``), so its fixed cost (building the head, tracing the
step, the final evaluation) weighs more than in the paper's 30K-step trials; the result
therefore also projects both rates to ``project_steps`` steps from the measured fixed
cost and median step time.
"""

import dataclasses
import os
import resource
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from nasseg_tf.data import ensure_demo_dataset, get_dataset_info
from nasseg_tf.search.dpc.cache import array_dataset, mobilenet_v2_cache
from nasseg_tf.search.dpc.proxy import (ProxyConfig, proxy_head, run_proxy_trial,
                                        train_and_score)
from nasseg_tf.search_space.dpc import DPCSearchSpace, random_cells


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _summary(trials, steps, project_steps):
    seconds = [t["seconds"] for t in trials]
    step = statistics.median(t["step_seconds_median"] for t in trials)
    mean = statistics.mean(seconds)
    fixed = max(0.0, mean - (steps - 1) * step)  # build + first call + evaluation
    projected = fixed + (project_steps - 1) * step
    return {
        "trial_seconds": seconds,
        "trial_seconds_mean": mean,
        "trials_per_hour": 3600.0 / mean,
        "step_seconds_median": step,
        "first_call_seconds_median": statistics.median(t["first_call_seconds"]
                                                       for t in trials),
        "eval_seconds_mean": statistics.mean(t["eval_seconds"] for t in trials),
        "fixed_seconds_per_trial": fixed,
        "projected_trial_seconds": projected,
        "projected_trials_per_hour": 3600.0 / projected,
        "miou": [t["miou"] for t in trials],
    }


def bench_dpc_proxy(crop_size=(129, 129), batch_size=8, filters=256, num_cells=3,
                    steps=20, num_train=32, num_val=16, depth_multiplier=1.0,
                    output_stride=16, project_steps=30000, work_dir=None, seed=0):
    """Runs the benchmark on demo data; returns a JSON-ready dict.

    ``work_dir`` keeps the demo data and the cache (a second run reuses both); by
    default they go to a temporary folder deleted at the end.
    """
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="dpc_proxy_bench-") as tmp:
            return bench_dpc_proxy(crop_size, batch_size, filters, num_cells, steps,
                                   num_train, num_val, depth_multiplier, output_stride,
                                   project_steps, tmp, seed)
    crop_size = tuple(int(s) for s in crop_size)
    info = get_dataset_info("demo")
    patterns = ensure_demo_dataset(os.path.join(work_dir, "data"), num_train=num_train,
                                   num_val=num_val, height=crop_size[0],
                                   width=crop_size[1], seed=seed)
    t0 = time.perf_counter()
    cache = mobilenet_v2_cache(os.path.join(work_dir, "cache"), patterns["train"],
                               patterns["val"], info, crop_size,
                               depth_multiplier=depth_multiplier,
                               output_stride=output_stride, seed=seed,
                               progress=False).build_or_load()
    cache_seconds = time.perf_counter() - t0

    config = ProxyConfig(steps=steps, batch_size=batch_size, filters=filters,
                         output_stride=output_stride, eval_fractions=(),
                         stop_if_trivial=False, eval_batch_size=batch_size, seed=seed)
    backbone = cache.backbone_model()
    backbone.trainable = False
    train_images, train_labels = (tf.convert_to_tensor(a) for a in cache.crops("train"))
    val_images, val_labels = (tf.convert_to_tensor(a) for a in cache.crops("val"))

    def recompute_trial(cell, cfg):
        def model_fn():
            images = keras.Input(crop_size + (3,), name="images")
            features = backbone(images, training=False)
            head = proxy_head(cell, info.num_classes, crop_size, cfg, cache.output_stride)
            return keras.Model(images, head(features), name="dpc_recompute")

        return train_and_score(
            model_fn, array_dataset(train_images, train_labels, cfg.batch_size, True,
                                     cfg.seed),
            array_dataset(val_images, val_labels, cfg.eval_batch_size, False),
            info.num_classes, info.ignore_label, cfg)

    cells = random_cells(DPCSearchSpace(), num_cells + 1, seed)
    warmup = dataclasses.replace(config, steps=2)  # process warm-up, not reported
    run_proxy_trial(cells[0], cache, warmup)
    recompute_trial(cells[0], warmup)
    cached, recomputed = [], []
    for cell in cells[1:]:
        cached.append(run_proxy_trial(cell, cache, config))
        recomputed.append(recompute_trial(cell, config))

    with_cache = _summary(cached, steps, project_steps)
    without = _summary(recomputed, steps, project_steps)
    saved = without["trial_seconds_mean"] - with_cache["trial_seconds_mean"]
    return {
        "benchmark": "dpc_proxy",
        "backbone": "mobilenet_v2",
        "depth_multiplier": depth_multiplier,
        "output_stride": output_stride,
        "crop_size": list(crop_size),
        "feature_shape": list(cache.feature_shape),
        "batch_size": batch_size,
        "filters": filters,
        "steps": steps,
        "num_cells": num_cells,
        "cells": [c.to_config() for c in cells[1:]],
        "num_train": num_train,
        "num_val": num_val,
        "cache_build_seconds": cache_seconds,
        "cache_compute_seconds": cache.stats["compute_seconds"],
        "cache_bytes": int(sum(os.path.getsize(os.path.join(cache.folder, f))
                               for f in os.listdir(cache.folder))),
        "cache_pays_off_after_trials": (cache_seconds / saved if saved > 0 else None),
        "cached": with_cache,
        "recompute": without,
        "trials_per_hour_ratio": with_cache["trials_per_hour"] / without["trials_per_hour"],
        "step_time_ratio": without["step_seconds_median"] / with_cache["step_seconds_median"],
        "project_steps": project_steps,
        "projected_trials_per_hour_ratio": (with_cache["projected_trials_per_hour"]
                                            / without["projected_trials_per_hour"]),
        "spec_target_ratio": 10.0,
        "miou_mean_abs_difference": float(np.mean(np.abs(
            np.subtract(with_cache["miou"], without["miou"])))),
        "peak_rss_gib": _peak_rss_gib(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
