"""bench/real_data.py: NIfTI reading, id grouping, slab split and row-by-row resume on
small synthetic volumes (no download)."""

import gzip
import importlib.util
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "bench_real_data", os.path.join(ROOT, "bench", "real_data.py"))
real_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(real_data)


def write_nifti(path, data, datatype, slope=0.0, inter=0.0, endian="<"):
    """A minimal NIfTI-1 (.nii.gz) file: header, 4 empty extension bytes, voxels."""
    header = bytearray(348)
    struct.pack_into(endian + "i", header, 0, 348)
    dims = (data.ndim,) + data.shape + (1,) * (7 - data.ndim)
    struct.pack_into(endian + "8h", header, 40, *dims)
    struct.pack_into(endian + "h", header, 70, datatype)
    struct.pack_into(endian + "3f", header, 108, 352.0, slope, inter)
    header[344:348] = b"n+1\0"
    dtype = np.dtype(endian + real_data._NIFTI_DTYPES[datatype])
    body = np.asarray(data, dtype).tobytes(order="F")
    with open(path, "wb") as f:
        f.write(gzip.compress(bytes(header) + b"\0" * 4 + body))


def synthetic_volumes(shape=(10, 16, 8)):
    """A T1 ball-ish brain and labels in two hemispheres (ids n and n + 1000)."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    brain = x ** 2 + (y / 1.1) ** 2 + z ** 2 < 0.8
    t1 = np.where(brain, 50.0 + 40.0 * (y + 1) + 5.0 * z, 0.0).astype(np.float32)
    ids = 1 + (np.floor((y + 1) * 4).astype(int) + 3 * np.floor((z + 1) * 2).astype(int))
    labels = np.where(brain & (np.abs(z) < 0.7), ids + np.where(x > 0, 1000, 0), 0)
    return t1, labels.astype(np.int16)


SMALL = real_data.Settings(axis=1, size=12, num_groups=5, slab=3, gap=1, val_every=3,
                           min_brain_fraction=0.05)


def test_read_nifti_roundtrips_int16_and_scaled_float_in_both_byte_orders(tmp_path):
    labels = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) * 7
    write_nifti(tmp_path / "l.nii.gz", labels, 4)
    np.testing.assert_array_equal(real_data.read_nifti(str(tmp_path / "l.nii.gz")), labels)
    t1 = np.random.RandomState(0).rand(3, 2, 5).astype(np.float32)
    write_nifti(tmp_path / "t.nii.gz", t1, 16, slope=2.0, inter=1.0, endian=">")
    np.testing.assert_allclose(real_data.read_nifti(str(tmp_path / "t.nii.gz")),
                               t1 * 2.0 + 1.0, rtol=1e-6)


def test_read_nifti_names_a_file_that_is_not_nifti(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(gzip.compress(b"x" * 400))
    with pytest.raises(real_data.BenchDataError, match="bad.nii.gz: not a NIfTI-1"):
        real_data.read_nifti(str(tmp_path / "bad.nii.gz"))


def test_fold_ids_merges_the_two_hemispheres_and_keeps_zero():
    np.testing.assert_array_equal(real_data.fold_ids([0, 5, 1005, 1605], 1000),
                                  [0, 5, 5, 605])
    np.testing.assert_array_equal(real_data.fold_ids([0, 1005], 0), [0, 1005])


def test_group_ids_cuts_contiguous_ranges_of_equal_mass_covering_every_id():
    counts = {i: 10 for i in range(1, 101)}
    groups = real_data.group_ids(counts, 10)
    assert [(a, b) for a, b, _ in groups] == [(1 + 10 * k, 10 * (k + 1)) for k in range(10)]
    assert all(mass == 100 for _, _, mass in groups)
    heavy = {1: 5, 2: 5, 3: 80, 4: 5, 5: 5}  # id 3 alone holds several shares
    groups = real_data.group_ids(heavy, 4)
    assert [(a, b) for a, b, _ in groups] == [(1, 3), (4, 5)]
    assert sum(m for *_, m in groups) == 100
    sparse = {2: 3, 9: 1, 40: 4, 41: 2}
    groups = real_data.group_ids(sparse, 2)
    covered = [i for i in sparse for a, b, _ in groups if a <= i <= b]
    assert sorted(covered) == sorted(sparse)


def test_class_volume_ignores_outside_brain_and_keeps_unlabelled_brain_as_class_0():
    t1, labels = synthetic_volumes()
    classes, names, groups = real_data.class_volume(t1, labels, SMALL)
    assert names[0] == real_data.UNLABELLED and len(names) == len(groups) + 1
    np.testing.assert_array_equal(classes == 255, (t1 <= 0) & (labels == 0))
    np.testing.assert_array_equal(classes == 0, (t1 > 0) & (labels == 0))
    assert set(np.unique(classes[labels > 0])) == set(range(1, len(names)))
    mirrored = labels > 1000  # a hemisphere's copy gets its partner's class
    partner = np.isin(labels, labels[mirrored] - 1000)
    assert set(np.unique(classes[mirrored])) <= set(np.unique(classes[partner]))


@pytest.mark.parametrize("slab,gap,val_every", [(10, 3, 4), (4, 1, 3), (1, 0, 2),
                                                (7, 5, 2)])
def test_val_slabs_do_not_touch_train_slabs(slab, gap, val_every):
    kept = list(range(5, 60)) + list(range(63, 140))  # a hole, as empty slices leave
    split = real_data.split_slices(kept, slab, gap, val_every)
    train = [s for s, v in split.items() if v == "train"]
    val = [s for s, v in split.items() if v == "val"]
    assert train and val
    assert min(abs(t - v) for t in train for v in val) > gap
    assert set(split) <= set(kept)
    runs, n = [], 0  # val comes in whole slabs of consecutive kept slices
    for k, s in enumerate(kept):
        if split.get(s) == "val":
            n += 1
        if n and (k == len(kept) - 1 or split.get(kept[k + 1]) != "val"):
            runs.append(n)
            n = 0
    assert all(r == slab for r in runs[:-1]) and 0 < runs[-1] <= slab


def test_plan_refuses_a_size_the_brain_does_not_fit():
    t1, labels = synthetic_volumes()
    with pytest.raises(real_data.BenchDataError, match="--size=6: the brain is"):
        real_data.plan(t1, labels, real_data.Settings(size=6))


def _files(folder):
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, fs in os.walk(folder) for f in fs}


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_finishes_the_rows_left_and_matches_a_clean_build(
        tmp_path):
    t1, labels = synthetic_volumes()
    whole, total = real_data.write_folder(t1, labels, SMALL, str(tmp_path / "clean"))
    assert total == len(whole["slices"]) > 6

    def stop_after_3(n):
        if n == 3:
            raise Interrupted

    folder = str(tmp_path / "killed")
    with pytest.raises(Interrupted):
        real_data.write_folder(t1, labels, SMALL, folder, on_row=stop_after_3)
    with open(os.path.join(folder, "manifest.json")) as f:
        assert len(json.load(f)["done"]) == 3
    os.remove(os.path.join(folder, "train", "images",
                           real_data._stem(whole["slices"][0][0], 1) + ".png"))
    _, written = real_data.write_folder(t1, labels, SMALL, folder)
    assert written == total - 3 + 1  # the rows left and the one whose file went missing
    assert _files(folder) == _files(str(tmp_path / "clean"))
    assert real_data.write_folder(t1, labels, SMALL, folder)[1] == 0  # idempotent


def test_a_folder_of_other_settings_is_refused(tmp_path):
    t1, labels = synthetic_volumes()
    real_data.write_folder(t1, labels, SMALL, str(tmp_path))
    other = real_data.Settings(**{**SMALL.__dict__, "gap": 2})
    with pytest.raises(real_data.BenchDataError, match="plan.json: was made with other"):
        real_data.write_folder(t1, labels, other, str(tmp_path))


def test_written_slices_are_rgb_images_with_labels_of_the_plan(tmp_path):
    from PIL import Image
    t1, labels = synthetic_volumes()
    the_plan, _ = real_data.write_folder(t1, labels, SMALL, str(tmp_path))
    index, split = the_plan["slices"][len(the_plan["slices"]) // 2]
    stem = real_data._stem(index, 1)
    image = np.array(Image.open(tmp_path / split / "images" / (stem + ".png")))
    label = np.array(Image.open(tmp_path / split / "labels" / (stem + ".png")))
    assert image.shape == (12, 12, 3) and label.shape == (12, 12)
    assert (image[..., 0] == image[..., 2]).all()
    assert (label[image[..., 0] == 0] == 255).mean() > 0.9  # background is ignored
    assert set(np.unique(label)) - {255} <= set(range(len(the_plan["class_names"])))
    assert (tmp_path / "classes.txt").read_text().splitlines() == the_plan["class_names"]


@pytest.mark.slow
@pytest.mark.e2e
def test_script_converts_from_another_directory_and_a_rerun_does_nothing(tmp_path):
    t1, labels = synthetic_volumes()
    templates = tmp_path / "templates"
    templates.mkdir()
    write_nifti(templates / real_data.T1_FILE, t1, 16)
    write_nifti(templates / real_data.LABELS_FILE, labels, 4)
    command = [sys.executable, os.path.join(ROOT, "bench", "real_data.py"),
               f"--templates_dir={templates}", f"--output_dir={tmp_path / 'out'}",
               "--size=12", "--num_groups=5", "--slab=3", "--gap=1", "--val_every=3"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    description = json.loads((tmp_path / "out" / "tfrecord" / "dataset.json").read_text())
    the_plan = json.loads((tmp_path / "out" / "folder" / "plan.json").read_text())
    assert description["class_names"] == the_plan["class_names"]
    from PIL import Image
    for split, entry in description["splits"].items():
        pngs = sorted((tmp_path / "out" / "folder" / split / "labels").glob("*.png"))
        assert entry["num_records"] == len(pngs)
        counts = np.bincount(np.concatenate([np.array(Image.open(p)).ravel()
                                             for p in pngs]), minlength=256)
        assert entry["pixel_counts"] == counts[:len(the_plan["class_names"])].tolist()
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0 and "already converted" in again.stdout
    bad = subprocess.run(command + ["--slab=0"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--slab=0" in bad.stderr
