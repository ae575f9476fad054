r"""A small real segmentation benchmark, ``inia19_neuromaps``, from a Debian package.

Source: Debian's ``mricron-data`` (``apt-get download mricron-data``; no root needed),
which ships the INIA19 macaque template: a brain-extracted T1 volume
(``inia19-t1-brain.nii.gz``) and its NeuroMaps label volume (``inia19-NeuroMaps.nii.gz``),
168 x 206 x 128 voxels of 0.5 mm, 724 label ids without names. (The other candidate, the
SpaceNet tiles in the ``solaris`` wheel, are building footprints: one foreground class.)

What it builds (all under ``--output_dir``, never in the repository):

- **Classes.** The ids come in mirrored pairs, ``n`` (one hemisphere, 1..605) and
  ``n + 1000`` (the other, with nearly equal voxel counts), so ids are first folded
  (``id % --hemisphere_offset``). The folded ids, in id order, are cut into
  ``--num_groups`` contiguous id ranges of about equal voxel mass (a range closes once
  the running total reaches the next multiple of total / num_groups), class ``k`` =
  ``group_kk (ids a-b)``. Class 0, ``unlabelled_brain``, is brain (T1 > 0) without a
  label (mostly white matter): a real tissue class, so it is kept. Outside the brain is
  ignored (255): the T1 is skull-stripped, so "outside" is a trivial black region that
  would dominate the pixel counts and the majority-class baseline.
- **Images.** Slices across ``--axis`` (default 1: coronal), cropped in-plane to the
  brain's bounding box over the whole volume, subsampled by ``--stride`` and centred in
  a ``--size`` x ``--size`` canvas (image 0, label 255 in the padding); intensity
  windowed from the 1st to the 99.5th percentile of brain voxels to 0..255 and repeated
  to RGB PNG. Slices with less than ``--min_brain_fraction`` brain pixels are skipped.
- **Split by slab.** The kept slices are cut into slabs of ``--slab`` consecutive
  slices; every ``--val_every``-th slab (offset ``val_every // 2``) is validation, and
  train slices within ``--gap`` slices of a validation slice are dropped, so no train
  slice neighbours a validation slice (neighbouring 0.5 mm slices are near-copies).
- **Conversion** with ``nasseg-build-data --dataset=generic`` into
  ``{output_dir}/tfrecord`` (``dataset.json`` there has the pixel counts per class).

Resumable row by row: each slice's image and label are written atomically and then
recorded in ``{output_dir}/folder/manifest.json``; a killed run resumes at the first
slice not recorded. The conversion runs once every slice exists (it installs its
shards atomically); a rerun with everything done does nothing. The plan (classes,
split) is saved in ``folder/plan.json``; a rerun with other settings into the same
folder is refused.

Usage::

    python bench/real_data.py [--output_dir=~/.cache/nasseg_tf/bench_data] [--size=129]

Requirements: the package itself (numpy, Pillow), ``apt-get`` and ``dpkg-deb`` to fetch
the source (or ``--templates_dir`` holding the two ``.nii.gz`` files). NIfTI-1 is read
by :func:`read_nifti` below (no nibabel needed). Bad input: one line, exit status 2.
"""

import argparse
import dataclasses
import glob
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

DEFAULT_OUTPUT_DIR = os.path.join("~", ".cache", "nasseg_tf", "bench_data")
DEB_PACKAGE = "mricron-data"
TEMPLATES_IN_DEB = os.path.join("usr", "share", "mricron", "templates")
T1_FILE = "inia19-t1-brain.nii.gz"
LABELS_FILE = "inia19-NeuroMaps.nii.gz"
DATASET_NAME = "inia19_neuromaps"
IGNORE = 255
UNLABELLED = "unlabelled_brain"

_NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2",
                 768: "u4", 1024: "i8", 1280: "u8"}


class BenchDataError(ValueError):
    """Bad input: the message names the file or the setting."""


# --------------------------------------------------------------------------------------
# Reading NIfTI-1.

def read_nifti(path):
    """The voxel array of a (gzipped) NIfTI-1 file, ``[x, y, z]``, scaled by
    ``scl_slope`` / ``scl_inter`` when the header sets them.

    Raises:
        BenchDataError: Not a NIfTI-1 file, or a data type or size it cannot hold.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise BenchDataError(f"{path}: broken gzip data ({e})") from None
    if len(raw) < 348:
        raise BenchDataError(f"{path}: too short for a NIfTI-1 header")
    for endian in "<>":
        if struct.unpack(endian + "i", raw[:4])[0] == 348:
            break
    else:
        raise BenchDataError(f"{path}: not a NIfTI-1 file (sizeof_hdr is not 348)")
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype, = struct.unpack(endian + "h", raw[70:72])
    vox_offset, slope, inter = struct.unpack(endian + "3f", raw[108:120])
    if raw[344:347] not in (b"n+1", b"ni1"):
        raise BenchDataError(f"{path}: not a NIfTI-1 file (magic {raw[344:348]!r})")
    if datatype not in _NIFTI_DTYPES:
        raise BenchDataError(f"{path}: NIfTI datatype {datatype} is not supported")
    if not 1 <= dim[0] <= 7:
        raise BenchDataError(f"{path}: bad dim[0] = {dim[0]}")
    shape = tuple(int(d) for d in dim[1:1 + dim[0]])
    dtype = np.dtype(endian + _NIFTI_DTYPES[datatype])
    start = int(vox_offset) if raw[344:347] == b"n+1" else 0
    count = int(np.prod(shape))
    if start + count * dtype.itemsize > len(raw):
        raise BenchDataError(f"{path}: {count} voxels of {dtype} do not fit the file")
    data = np.frombuffer(raw, dtype, count, start).reshape(shape, order="F")
    if slope not in (0.0, 1.0) and np.isfinite(slope):
        data = data * slope + (inter if np.isfinite(inter) else 0.0)
    return np.asarray(data)


# --------------------------------------------------------------------------------------
# Classes, slices, split: pure functions of the volumes and the settings.

@dataclasses.dataclass(frozen=True)
class Settings:
    axis: int = 1
    size: int = 129
    stride: int = 1
    num_groups: int = 24
    hemisphere_offset: int = 1000
    min_brain_fraction: float = 0.05
    slab: int = 10
    gap: int = 3
    val_every: int = 4

    def check(self):
        """Raises BenchDataError naming the first bad setting."""
        rules = [("axis", self.axis in (0, 1, 2), "0, 1 or 2"),
                 ("size", self.size >= 8, ">= 8"), ("stride", self.stride >= 1, ">= 1"),
                 ("num_groups", 1 <= self.num_groups <= 250, "in 1..250"),
                 ("hemisphere_offset", self.hemisphere_offset >= 0, ">= 0"),
                 ("min_brain_fraction", 0 <= self.min_brain_fraction < 1, "in [0, 1)"),
                 ("slab", self.slab >= 1, ">= 1"), ("gap", self.gap >= 0, ">= 0"),
                 ("val_every", self.val_every >= 2, ">= 2")]
        for name, ok, need in rules:
            if not ok:
                raise BenchDataError(f"--{name}={getattr(self, name)}: must be {need}")


def fold_ids(labels, hemisphere_offset):
    """Label ids with the two hemispheres' copies merged (``id % offset``; 0 keeps)."""
    labels = np.asarray(labels, np.int64)
    return labels % hemisphere_offset if hemisphere_offset else labels


def group_ids(counts, num_groups):
    """Contiguous id ranges of about equal voxel mass.

    Args:
        counts: ``{id: voxels}`` of the ids > 0 (folded).
        num_groups: Ranges wanted; fewer come back when single ids hold more than a
            share (a range closes once the running total reaches the next multiple of
            total / num_groups, so one heavy id can close several shares at once).

    Returns:
        ``[(first_id, last_id, voxels), ...]`` in id order, every id in exactly one.
    """
    ids = sorted(i for i, c in counts.items() if c > 0)
    total = sum(counts[i] for i in ids)
    groups, start, running, closed = [], None, 0, 0
    for i in ids:
        start = i if start is None else start
        running += counts[i]
        if running * num_groups >= (closed + 1) * total or i == ids[-1]:
            mass = running - sum(g[2] for g in groups)
            groups.append((int(start), int(i), int(mass)))
            start = None
            closed = running * num_groups // total
    return groups


def class_lut(groups, max_id):
    """``lut[folded id] -> class``: group k (0-based) is class k + 1; 0 stays 0."""
    lut = np.zeros(max_id + 1, np.int64)
    for k, (first, last, _) in enumerate(groups):
        lut[first:last + 1] = k + 1
    return lut


def class_names(groups):
    return [UNLABELLED] + [f"group_{k + 1:02d} (ids {a}-{b})" if a != b else
                           f"group_{k + 1:02d} (id {a})"
                           for k, (a, b, _) in enumerate(groups)]


def class_volume(t1, labels, settings):
    """The class of every voxel, and the class names; grouping rule in the module doc."""
    folded = fold_ids(labels, settings.hemisphere_offset)
    ids, counts = np.unique(folded[folded > 0], return_counts=True)
    groups = group_ids(dict(zip(ids.tolist(), counts.tolist())), settings.num_groups)
    lut = class_lut(groups, int(folded.max()))
    classes = lut[folded]
    classes[(folded == 0) & (t1 <= 0)] = IGNORE
    return classes.astype(np.uint8), class_names(groups), groups


def split_slices(kept, slab, gap, val_every):
    """``{slice index: 'train' | 'val'}`` of the kept slice indices (sorted), by slab.

    Slabs are runs of ``slab`` consecutive kept slices counted from the first; slab
    ``k`` is validation when ``k % val_every == val_every // 2``. Train slices whose
    index is within ``gap`` of a validation slice's are dropped (absent from the
    result).
    """
    kept = sorted(kept)
    val = [s for n, s in enumerate(kept) if (n // slab) % val_every == val_every // 2]
    val_set = set(val)
    split = {}
    for s in kept:
        if s in val_set:
            split[s] = "val"
        elif not any(abs(s - v) <= gap for v in val):
            split[s] = "train"
    return split


def window(t1):
    """T1 intensity -> uint8: 1st..99.5th percentile of brain voxels to 0..255."""
    brain = t1[t1 > 0]
    lo, hi = np.percentile(brain, [1.0, 99.5]) if brain.size else (0.0, 1.0)
    scaled = (t1.astype(np.float64) - lo) / max(hi - lo, 1e-9) * 255.0
    return np.where(t1 > 0, np.clip(np.rint(scaled), 0, 255), 0).astype(np.uint8)


def _slice(volume, axis, index):
    """Slice ``index`` across ``axis`` as an image: rows the higher remaining axis
    reversed (superior up for axes x, y), columns the lower one."""
    plane = np.take(volume, index, axis=axis)
    return plane.T[::-1]


def plan(t1, labels, settings):
    """Everything to write: class names, groups and ``[(index, split)]``.

    Raises:
        BenchDataError: Volumes of different shapes, or a crop that does not fit
            ``size`` (naming the setting to change).
    """
    if t1.shape != labels.shape or t1.ndim != 3:
        raise BenchDataError(f"T1 {t1.shape} and labels {labels.shape} must be the same "
                             f"3-D shape")
    brain = (t1 > 0) | (labels > 0)
    box = _brain_box(brain, settings)
    height, width = (box[1] - box[0] + settings.stride - 1) // settings.stride, \
        (box[3] - box[2] + settings.stride - 1) // settings.stride
    if max(height, width) > settings.size:
        raise BenchDataError(f"--size={settings.size}: the brain is {height} x {width} "
                             f"pixels at --stride={settings.stride}; raise --size or "
                             f"--stride")
    kept = []
    for index in range(brain.shape[settings.axis]):
        plane = _crop(_slice(brain, settings.axis, index), box, settings.stride)
        if plane.mean() >= settings.min_brain_fraction and plane.any():
            kept.append(index)
    if not kept:
        raise BenchDataError(f"--min_brain_fraction={settings.min_brain_fraction}: no "
                             f"slice has that much brain")
    split = split_slices(kept, settings.slab, settings.gap, settings.val_every)
    if "val" not in split.values() or "train" not in split.values():
        raise BenchDataError(f"--slab={settings.slab}, --val_every={settings.val_every}: "
                             f"{len(kept)} slices give no train or no val slab")
    classes, names, groups = class_volume(t1, labels, settings)
    return {"settings": dataclasses.asdict(settings), "box": list(box),
            "class_names": names,
            "groups": [{"class": k + 1, "ids": [a, b], "voxels": m}
                       for k, (a, b, m) in enumerate(groups)],
            "slices": [[int(s), split[s]] for s in sorted(split)]}, classes


def _brain_box(brain, settings):
    """[row0, row1, col0, col1] of the brain in the slice image over all slices."""
    rows_cols = _slice(brain.any(axis=settings.axis, keepdims=True), settings.axis, 0)
    rows, cols = np.where(rows_cols.any(axis=1))[0], np.where(rows_cols.any(axis=0))[0]
    if not rows.size:
        raise BenchDataError("the volumes hold no brain (T1 > 0) voxel")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _crop(plane, box, stride):
    return plane[box[0]:box[1]:stride, box[2]:box[3]:stride]


def _pad(plane, size, fill):
    out = np.full((size, size), fill, plane.dtype)
    top, left = (size - plane.shape[0]) // 2, (size - plane.shape[1]) // 2
    out[top:top + plane.shape[0], left:left + plane.shape[1]] = plane
    return out


def slice_pair(grey, classes, index, box, settings):
    """(RGB uint8 image, uint8 label), both ``size`` x ``size``, of one slice.

    The image takes the ``stride`` x ``stride`` mean of the windowed T1 (nearest
    sample for the labels)."""
    stride = settings.stride
    label = _crop(_slice(classes, settings.axis, index), box, stride)
    plane = _slice(grey, settings.axis, index)[box[0]:box[1], box[2]:box[3]].astype(float)
    if stride > 1:
        h, w = label.shape
        plane = np.pad(plane, ((0, h * stride - plane.shape[0]),
                               (0, w * stride - plane.shape[1])), mode="edge")
        plane = plane.reshape(h, stride, w, stride).mean(axis=(1, 3))
    image = _pad(np.rint(plane).astype(np.uint8), settings.size, 0)
    return np.repeat(image[..., None], 3, axis=2), _pad(label, settings.size, IGNORE)


# --------------------------------------------------------------------------------------
# Writing, row by row, and converting.

def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _stem(index, axis):
    return f"slice_{'xyz'[axis]}{index:03d}"


def write_folder(t1, labels, settings, folder, on_row=None):
    """Writes (or completes) the generic-layout folder; returns (plan, rows written).

    ``on_row(n)`` is called after each row is recorded (tests use it to interrupt).

    Raises:
        BenchDataError: Bad settings, or ``folder`` holds a different plan.
    """
    from nasseg_tf import fileio
    settings.check()
    the_plan, classes = plan(t1, labels, settings)
    plan_path = os.path.join(folder, "plan.json")
    if os.path.exists(plan_path):
        with open(plan_path) as f:
            old = json.load(f)
        if old != json.loads(json.dumps(the_plan)):
            raise BenchDataError(f"{plan_path}: was made with other settings or data; "
                                 f"use another --output_dir")
    else:
        fileio.atomic_write_json(plan_path, the_plan, indent=1)
    fileio.atomic_write_text(os.path.join(folder, "classes.txt"),
                             "\n".join(the_plan["class_names"]) + "\n")
    manifest_path = os.path.join(folder, "manifest.json")
    done = []
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            done = json.load(f)["done"]
    grey = window(t1)
    written = 0
    for index, split in the_plan["slices"]:
        stem = _stem(index, settings.axis)
        files = [os.path.join(folder, split, kind, stem + ".png")
                 for kind in ("images", "labels")]
        if stem in done and all(os.path.exists(p) for p in files):
            continue
        image, label = slice_pair(grey, classes, index, tuple(the_plan["box"]), settings)
        fileio.atomic_write_bytes(files[0], _png(image))
        fileio.atomic_write_bytes(files[1], _png(label))
        done = sorted(set(done) | {stem})
        fileio.atomic_write_json(manifest_path, {"done": done})
        written += 1
        if on_row is not None:
            on_row(written)
    return the_plan, written


def converted(the_plan, tfrecord_dir):
    """Whether ``tfrecord_dir/dataset.json`` describes this plan's records."""
    path = os.path.join(tfrecord_dir, "dataset.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        description = json.load(f)
    wanted = {s: sum(1 for _, split in the_plan["slices"] if split == s)
              for s in ("train", "val")}
    return (description.get("class_names") == the_plan["class_names"] and
            all(description.get("splits", {}).get(s, {}).get("num_records") == n
                for s, n in wanted.items()))


def convert(folder, tfrecord_dir):
    """``nasseg-build-data --dataset=generic`` on ``folder`` (a fresh process)."""
    command = [sys.executable, "-m", "nasseg_tf.cli.build_data", "--dataset=generic",
               f"--root={folder}", f"--class_names={os.path.join(folder, 'classes.txt')}",
               f"--output_dir={tfrecord_dir}", "--splits=train,val", "--num_shards=2",
               f"--name={DATASET_NAME}"]
    print("converting:", " ".join(command[2:]), flush=True)
    result = subprocess.run(command)
    if result.returncode:
        raise BenchDataError(f"nasseg-build-data failed (exit {result.returncode}) on "
                             f"{folder}")


def fetch_templates(source_dir):
    """The folder of the two NIfTI files, fetched with apt-get and dpkg-deb once."""
    templates = os.path.join(source_dir, TEMPLATES_IN_DEB)
    if all(os.path.exists(os.path.join(templates, f)) for f in (T1_FILE, LABELS_FILE)):
        return templates
    os.makedirs(source_dir, exist_ok=True)
    debs = glob.glob(os.path.join(source_dir, DEB_PACKAGE + "_*.deb"))
    if not debs:
        print(f"apt-get download {DEB_PACKAGE} into {source_dir}", flush=True)
        result = subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=source_dir,
                                capture_output=True, text=True)
        debs = glob.glob(os.path.join(source_dir, DEB_PACKAGE + "_*.deb"))
        if result.returncode or not debs:
            raise BenchDataError(f"apt-get download {DEB_PACKAGE} failed (exit "
                                 f"{result.returncode}); pass --templates_dir with "
                                 f"{T1_FILE} and {LABELS_FILE}")
    staging = tempfile.mkdtemp(prefix=".extract-", dir=source_dir)
    result = subprocess.run(["dpkg-deb", "-x", debs[0], staging], capture_output=True)
    if result.returncode:
        raise BenchDataError(f"{debs[0]}: dpkg-deb -x failed (exit {result.returncode})")
    os.makedirs(os.path.dirname(templates), exist_ok=True)
    if os.path.exists(templates):
        subprocess.run(["rm", "-rf", templates], check=True)
    os.replace(os.path.join(staging, TEMPLATES_IN_DEB), templates)
    subprocess.run(["rm", "-rf", staging], check=True)
    return templates


def build(output_dir, settings, templates_dir=None):
    """Fetch, slice, convert: each step skipped when already done. Returns a summary."""
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    templates = templates_dir or fetch_templates(os.path.join(output_dir, "source"))
    paths = [os.path.join(templates, f) for f in (T1_FILE, LABELS_FILE)]
    for path in paths:
        if not os.path.exists(path):
            raise BenchDataError(f"{path}: not found")
    t1, labels = read_nifti(paths[0]), read_nifti(paths[1])
    folder = os.path.join(output_dir, "folder")
    tfrecord_dir = os.path.join(output_dir, "tfrecord")
    the_plan, written = write_folder(t1, labels, settings, folder)
    splits = [split for _, split in the_plan["slices"]]
    print(f"{len(the_plan['class_names'])} classes; slices: "
          f"{splits.count('train')} train, {splits.count('val')} val "
          f"({written} written now) in {folder}", flush=True)
    if converted(the_plan, tfrecord_dir):
        print(f"already converted: {tfrecord_dir}/dataset.json", flush=True)
    else:
        convert(folder, tfrecord_dir)
    return the_plan, tfrecord_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"{self.prog}: {message}\n")


def main(argv=None):
    defaults = Settings()
    parser = _Parser(prog="bench/real_data.py", description=__doc__.split("\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                        help="source/, folder/ (PNG slices) and tfrecord/ go here")
    parser.add_argument("--templates_dir", default=None,
                        help=f"folder with {T1_FILE} and {LABELS_FILE} (skips apt-get)")
    help_text = {"axis": "slice across this axis (0 sagittal, 1 coronal, 2 axial)",
                 "size": "images are size x size pixels",
                 "stride": "in-plane subsampling of the 0.5 mm voxels",
                 "num_groups": "label id ranges of about equal voxel mass",
                 "hemisphere_offset": "ids n and n + offset are one class (0: keep)",
                 "min_brain_fraction": "skip slices with less brain in the crop",
                 "slab": "slices per slab of the train/val split",
                 "gap": "train slices this close to a val slice are dropped",
                 "val_every": "every val_every-th slab is validation"}
    for field in dataclasses.fields(Settings):
        parser.add_argument(f"--{field.name}", type=type(getattr(defaults, field.name)),
                            default=getattr(defaults, field.name),
                            help=help_text[field.name])
    args = parser.parse_args(argv)
    settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
    try:
        settings.check()
        build(args.output_dir, settings, args.templates_dir)
    except BenchDataError as e:
        print(f"bench/real_data.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
