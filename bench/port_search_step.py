#!/usr/bin/env python
r"""Times the public PyTorch Auto-DeepLab search port as SPEC §6 describes, for side-by-side runs.

Not part of the package and not run by the tests: it needs the port's sources
(NoamRosenberg/autodeeplab at 065cf99, fetched into a scratch folder, never into this
repository) and PyTorch (``torch==2.13.0`` CPU, in a venv of its own)::

    /usr/bin/time -v TORCH_VENV/bin/python bench/port_search_step.py --port_dir=PORT \
        --crop=321 --filter_multiplier=8 --num_layers=12 --steps=3 --output=port.json

Alternate its processes with ``tools/benchmark.py search`` runs of the same size and
summarise both with ``bench/search_table.py``. With 2 threads it builds
``AutoDeeplab(num_classes=19, num_layers=L, criterion=None, filter_multiplier=F,
block_multiplier=5, step=5)`` (``platform.system()`` reads "Windows" during the import,
which skips compiling a CUDA extension the search does not use; ``.cuda()`` returns
its tensor or module), SGD on ``weight_parameters()`` (0.025, momentum 0.9, weight
decay 3e-4) and Adam on ``arch_parameters()`` (3e-3, weight decay 1e-3), random data
``randn(2, 3, H, W)`` / ``randint(0, 19)``; a weight step and an architecture step are
zero_grad, forward, cross-entropy, backward and the optimiser's step. One warm-up of
each, then ``--steps`` of each, alternating; the record holds the medians, every time
and the peak resident memory (``getrusage``: the figure ``/usr/bin/time -v`` prints as
"Maximum resident set size").
"""
import argparse
import json
import platform
import resource
import statistics
import sys
import time
from unittest import mock

import torch
import torch.nn as nn



def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port_dir", required=True,
                   help="the port's sources (NoamRosenberg/autodeeplab at 065cf99)")
    p.add_argument("--crop", type=int, required=True, help="square crop H (=W)")
    p.add_argument("--filter_multiplier", type=int, required=True)
    p.add_argument("--num_layers", type=int, required=True)
    p.add_argument("--steps", type=int, default=3, help="timed steps of each kind")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="JSON path")
    a = p.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(a.seed)

    # The search never uses the in-place ABN CUDA extension; pretending to be Windows makes
    # operations.py define a plain BN+ReLU ABN instead of compiling modeling/modules.
    # forward() calls torch.randn(...).cuda(); make .cuda() a no-op on CPU.
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, a.port_dir)
    with mock.patch.object(platform, "system", return_value="Windows"):
        from auto_deeplab import AutoDeeplab

    t0 = time.perf_counter()
    model = AutoDeeplab(num_classes=19, num_layers=a.num_layers, criterion=None,
                        filter_multiplier=a.filter_multiplier, block_multiplier=5, step=5)
    model.train()
    criterion = nn.CrossEntropyLoss(ignore_index=255)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=3e-3, weight_decay=1e-3)
    build_s = time.perf_counter() - t0

    H = W = a.crop
    x = torch.randn(a.batch, 3, H, W)
    y = torch.randint(0, 19, (a.batch, H, W))

    def step(opt):
        t = time.perf_counter()
        opt.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        opt.step()
        return time.perf_counter() - t, float(loss.item())

    warm_w, _ = step(w_opt)
    warm_a, _ = step(a_opt)
    w_times, a_times, losses = [], [], []
    for _ in range(a.steps):
        tw, lw = step(w_opt)
        ta, la = step(a_opt)
        w_times.append(tw)
        a_times.append(ta)
        losses.append([lw, la])

    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {
        "impl": "NoamRosenberg/autodeeplab@065cf99 (PyTorch)",
        "config": {"crop": a.crop, "filter_multiplier": a.filter_multiplier,
                   "num_layers": a.num_layers, "block_multiplier": 5, "step": 5,
                   "batch": a.batch, "num_classes": 19, "steps": a.steps, "threads": 2},
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "n_weight_params": sum(p.numel() for p in model.weight_parameters()),
        "n_arch_params": sum(p.numel() for p in model.arch_parameters()),
        "build_s": build_s,
        "warmup_weight_step_s": warm_w,
        "warmup_arch_step_s": warm_a,
        "weight_step_s_median": statistics.median(w_times),
        "arch_step_s_median": statistics.median(a_times),
        "weight_step_s_all": w_times,
        "arch_step_s_all": a_times,
        "losses": losses,
        "peak_rss_getrusage_gib": ru / 1024.0 ** 2,
    }
    with open(a.output, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
