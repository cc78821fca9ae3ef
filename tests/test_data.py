from __future__ import annotations

import gzip
import hashlib
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ccyclegan.core import fer2013
from ccyclegan.core.data import (
    EMOTIONS,
    IMAGE_SIZE,
    NUM_CLASSES,
    DataError,
    FaceData,
    denormalize,
    drop_blank,
    load_split,
    normalize,
    read_fer2013_csv,
    read_image_folder,
    write_fer2013_csv,
    write_image_folder,
)
from ccyclegan.core.synthetic import synthetic_faces

REAL_FER = Path(os.environ.get(
    "CCYCLEGAN_FER2013",
    Path(__file__).resolve().parents[2] / "shared/data/fer2013/fer2013.csv.gz"))
# Version 2 of the shared file (sharp Training rows; version 1's were blurred). Its README has
# the counts pinned below.
FER2013_V2_SHA256 = "8834743ea9e995b1802854f7ec8cdb41da93a1a0cd33c8f0534548e9af182732"


def assert_same(a: FaceData, b: FaceData) -> None:
    assert a.images.dtype == b.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)


def by_class(data: FaceData) -> FaceData:
    """The order read_image_folder returns: by class, then by original index."""
    return data.subset(torch.sort(data.labels, stable=True).indices)


def faces(n: int, label: int = 0, value: int | None = None, seed: int = 0) -> FaceData:
    rng = np.random.default_rng(seed)
    images = (np.full((n, 1, 48, 48), value, np.uint8) if value is not None
              else rng.integers(0, 256, (n, 1, 48, 48), dtype=np.uint8))
    return FaceData(torch.from_numpy(images), torch.full((n,), label, dtype=torch.int64))


# --------------------------------------------------------------------------------------------
# FaceData


def test_constants():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert NUM_CLASSES == len(EMOTIONS) == 7 and IMAGE_SIZE == 48


@pytest.mark.parametrize("images, labels", [
    (torch.zeros(2, 1, 48, 48), torch.zeros(2, dtype=torch.int64)),                 # float
    (torch.zeros(2, 48, 48, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)),  # no channel
    (torch.zeros(2, 3, 48, 48, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)),
    (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)),
    (torch.zeros(2, 1, 48, 48, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32)),
    (torch.zeros(2, 1, 48, 48, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)),
    (torch.zeros(2, 1, 48, 48, dtype=torch.uint8), torch.tensor([0, 7])),
    (torch.zeros(2, 1, 48, 48, dtype=torch.uint8), torch.tensor([-1, 0])),
    (np.zeros((2, 1, 48, 48), np.uint8), torch.zeros(2, dtype=torch.int64)),
])
def test_facedata_rejects_bad_tensors(images, labels):
    with pytest.raises(ValueError):
        FaceData(images, labels)


def test_facedata_subset_counts_and_contiguity():
    data = synthetic_faces(3)
    assert len(data) == 21 and data.class_counts() == [3] * 7
    assert data.images.is_contiguous()
    every_other = data.subset(slice(None, None, 2))
    assert every_other.images.is_contiguous() and len(every_other) == 11
    assert torch.equal(every_other.images, data.images[::2])
    assert data.subset([0, 8]).labels.tolist() == [0, 1]
    assert data.subset(torch.tensor([20])).labels.tolist() == [6]
    assert len(data.subset(data.labels == 3)) == 3
    one = data.subset(5)
    assert one.images.shape == (1, 1, 48, 48) and one.labels.tolist() == [5]
    assert len(data.subset([])) == 0 and data.subset([]).class_counts() == [0] * 7
    assert "n=21" in repr(data)
    # Non-contiguous input is accepted and made contiguous.
    t = torch.zeros(1, 48, 48, 2, dtype=torch.uint8).permute(0, 3, 1, 2)[:, :1]
    assert FaceData(t, torch.zeros(1, dtype=torch.int64)).images.is_contiguous()


# --------------------------------------------------------------------------------------------
# CSV


@pytest.mark.parametrize("name", ["faces.csv", "faces.csv.gz"])
def test_csv_round_trip(tmp_path, name):
    splits = {"Training": synthetic_faces(4, seed=1), "PublicTest": synthetic_faces(2, seed=2),
              "PrivateTest": synthetic_faces(1, seed=3)}
    path = tmp_path / name
    write_fer2013_csv(path, splits)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_fer2013_csv(path)
    assert list(back) == ["Training", "PublicTest", "PrivateTest"]
    for usage, data in splits.items():
        assert_same(back[usage], data)


def test_csv_gzip_detected_by_content_not_suffix(tmp_path):
    data = synthetic_faces(1)
    gz, plain = tmp_path / "a.csv.gz", tmp_path / "b.csv"
    write_fer2013_csv(gz, {"train": data})
    write_fer2013_csv(plain, {"train": data})
    renamed_gz, renamed_plain = tmp_path / "gz_named.csv", tmp_path / "plain_named.csv.gz"
    renamed_gz.write_bytes(gz.read_bytes())
    renamed_plain.write_bytes(plain.read_bytes())
    for path in (renamed_gz, renamed_plain):
        assert_same(read_fer2013_csv(path)["Training"], data)


def pixels_text(values) -> str:
    return " ".join(str(v) for v in values)


def test_csv_column_order_quotes_crlf_and_no_usage(tmp_path):
    data = synthetic_faces(1)
    rows = data.images.reshape(7, -1).tolist()
    labels = data.labels.tolist()
    # Any column order, an extra column, CRLF endings, a BOM, quoted fields, a blank line.
    lines = ["\ufeffUsage,pixels,emotion,source"]
    for k, (row, label) in enumerate(zip(rows, labels, strict=True)):
        usage = "Training" if k < 5 else "PublicTest"
        pix = f'"{pixels_text(row)}"' if k % 2 else pixels_text(row)
        lines.append(f"{usage},{pix},{label},x")
        if k == 2:
            lines.append("")
    path = tmp_path / "reordered.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    back = read_fer2013_csv(path)
    assert_same(back["Training"], data.subset(slice(0, 5)))
    assert_same(back["PublicTest"], data.subset(slice(5, 7)))

    # Kaggle's train.csv: emotion,pixels only, pixels quoted -> all "Training".
    kaggle = tmp_path / "train.csv"
    kaggle.write_text("emotion,pixels\n" + "".join(
        f'{label},"{pixels_text(row)}"\n' for row, label in zip(rows, labels, strict=True)))
    back = read_fer2013_csv(kaggle)
    assert list(back) == ["Training"]
    assert_same(back["Training"], data)


def test_csv_lenient_whitespace_and_leading_zeros(tmp_path):
    """Non-canonical but unambiguous pixel text goes through the slow path and still loads."""
    row = np.arange(48 * 48) % 256
    text = "  ".join(f"{v:03d}" for v in row)  # double spaces, zero padded
    path = tmp_path / "odd.csv"
    path.write_text(f"emotion,pixels,Usage\n2, {text} ,Training\n")
    got = read_fer2013_csv(path)["Training"]
    assert got.labels.tolist() == [2]
    assert got.images.flatten().tolist() == row.tolist()


GOOD = " ".join(["7"] * 2304)


def bad_pixels(k: int, token: str) -> str:
    values = ["7"] * 2304
    values[k] = token
    return " ".join(values)


MALFORMED = {
    # case: (line 4 of the file, field named in the message)
    "too few pixels": (f"3,{' '.join(['1'] * 2303)},Training", "pixels"),
    "too many pixels": (f"3,{' '.join(['1'] * 2305)},Training", "pixels"),
    "empty pixels": ("3,,Training", "pixels"),
    "non-integer pixel": (f"3,{bad_pixels(100, '12.5')},Training", "pixels"),
    "letter pixel": (f"3,{bad_pixels(0, 'ab')},Training", "pixels"),
    "negative pixel": (f"3,{bad_pixels(5, '-1')},Training", "pixels"),
    "pixel 256": (f"3,{bad_pixels(2303, '256')},Training", "pixels"),
    "pixel wrapping to 5 in int32": (f"3,{bad_pixels(9, '4294967301')},Training", "pixels"),
    "label 7": (f"7,{GOOD},Training", "emotion"),
    "label -1": (f"-1,{GOOD},Training", "emotion"),
    "label x": (f"x,{GOOD},Training", "emotion"),
    "label 3.0": (f"3.0,{GOOD},Training", "emotion"),
    "label empty": (f",{GOOD},Training", "emotion"),
    "unknown usage": (f"3,{GOOD},Validation", "Usage"),
    "too few fields": (f"3,{GOOD}", "fields"),
    "too many fields": (f"3,{GOOD},Training,extra", "fields"),
}


def write_with_bad_line(path: Path, bad: str, header: str = "emotion,pixels,Usage") -> None:
    lines = [header, f"0,{GOOD},Training", f"1,{GOOD},PublicTest", bad, f"2,{GOOD},Training"]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_csv_malformed_row_names_file_line_field(tmp_path, case):
    bad, field = MALFORMED[case]
    path = tmp_path / f"bad_{case.replace(' ', '_')}.csv"
    write_with_bad_line(path, bad)
    with pytest.raises(DataError) as err:
        read_fer2013_csv(path)
    msg = str(err.value)
    assert path.name in msg and "line 4:" in msg and field in msg, msg


@pytest.mark.parametrize("header, missing", [
    ("emotion,Usage", "pixels"), ("pixels,Usage", "emotion"), ("label,pixels,Usage", "emotion"),
])
def test_csv_missing_column(tmp_path, header, missing):
    path = tmp_path / "nocol.csv.gz"
    write_with_bad_line(path, f"3,{GOOD},Training", header=header)
    with pytest.raises(DataError, match=rf"nocol\.csv\.gz: line 1: missing column '{missing}'"):
        read_fer2013_csv(path)


@pytest.mark.parametrize("content", [b"", b"\n", b"emotion,pixels,Usage\n",
                                     b"emotion,pixels,Usage\n\n\n"])
def test_csv_empty_or_header_only(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty.csv"):
        read_fer2013_csv(path)


def test_csv_bad_row_in_later_chunk_and_gzip(tmp_path, monkeypatch):
    """The numpy fast path works per chunk: the line must still be the file's line."""
    monkeypatch.setattr(fer2013, "_CSV_CHUNK_ROWS", 2)
    rows = [f"{k % 7},{GOOD},Training" for k in range(8)]
    rows[5] = f"1,{bad_pixels(7, '300')},Training"  # line 7
    path = tmp_path / "chunked.csv.gz"
    path.write_bytes(gzip.compress(("emotion,pixels,Usage\n" + "\n".join(rows)).encode()))
    with pytest.raises(DataError, match=r"chunked\.csv\.gz: line 7: field 'pixels': value 8 "):
        read_fer2013_csv(path)
    rows[5] = f"1,{GOOD},Training"
    path.write_bytes(gzip.compress(("emotion,pixels,Usage\n" + "\n".join(rows)).encode()))
    data = read_fer2013_csv(path)["Training"]
    assert len(data) == 8 and int(data.images.max()) == int(data.images.min()) == 7


def test_csv_truncated_gzip(tmp_path):
    path = tmp_path / "cut.csv.gz"
    write_fer2013_csv(path, {"Training": synthetic_faces(3)})
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: line \d+"):
        read_fer2013_csv(path)


# --------------------------------------------------------------------------------------------
# Image folders


def test_image_folder_round_trip_png(tmp_path):
    splits = {"train": synthetic_faces(3, seed=4), "test": synthetic_faces(1, seed=5)}
    write_image_folder(tmp_path, splits)
    assert (tmp_path / "train" / "happy").is_dir()
    assert len(list((tmp_path / "train" / "sad").iterdir())) == 3
    back = read_image_folder(tmp_path)
    assert sorted(back) == ["test", "train"]
    for name, data in splits.items():
        assert_same(back[name], by_class(data))


def test_image_folder_jpeg_is_close(tmp_path):
    data = synthetic_faces(1, seed=6)
    write_image_folder(tmp_path, {"val": data}, ext="jpg")
    back = read_image_folder(tmp_path)["val"]
    assert torch.equal(back.labels, data.labels)
    diff = (back.images.float() - data.images.float()).abs().mean()
    assert diff < 4, diff


def test_flat_layout_aliases_and_natural_order(tmp_path):
    names = {"Happiness": 3, "ANGER": 0, "0": 0, "surprised": 5, "Sadness": 4, "disgusted": 1,
             "fearful": 2, "neutral": 6}
    for k, (folder, _) in enumerate(names.items()):
        (tmp_path / folder).mkdir()
        for i in (10, 9):  # natural order puts 9 before 10
            Image.fromarray(np.full((48, 48), k * 20 + i, np.uint8)).save(
                tmp_path / folder / f"Training_{i}.png")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / "neutral" / "._Training_9.png").write_bytes(b"mac resource fork")
    (tmp_path / "neutral" / "Thumbs.db").write_bytes(b"windows")
    (tmp_path / ".hidden_dir").mkdir()
    back = read_image_folder(tmp_path)
    assert list(back) == ["all"]
    data = back["all"]
    assert data.class_counts() == [4, 2, 2, 2, 2, 2, 2]
    assert data.labels.tolist() == sorted(data.labels.tolist())
    # Class 0 comes from "0" then "ANGER" (natural order of folder names), 9 before 10.
    firsts = data.images[:, 0, 0, 0].tolist()
    assert firsts[:4] == [2 * 20 + 9, 2 * 20 + 10, 1 * 20 + 9, 1 * 20 + 10]


def test_colour_resize_crop_and_exif_rotation(tmp_path):
    folder = tmp_path / "happy"
    folder.mkdir()
    # 100x80 RGB: after the centre crop (columns 10..89) the top-left quadrant is white.
    rgb = np.zeros((80, 100, 3), np.uint8)
    rgb[..., 2] = 80                # dark blue background
    rgb[:, :10] = (0, 255, 0)       # green strip, must be cropped away
    rgb[:40, 10:50] = 255           # white block, top-left of the crop
    Image.fromarray(rgb).save(folder / "a_colour.png")
    # JPEG stored with a bright top band, EXIF orientation 6: displayed rotated 90 degrees
    # clockwise, so the band must end up on the right.
    stored = np.zeros((64, 64), np.uint8)
    stored[:16] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).convert("RGB").save(folder / "b_rotated.jpg", exif=exif, quality=95)
    # 16-bit grey PNG: must be scaled, not clipped.
    deep = np.full((48, 48), 1000, np.uint16)
    deep[:, 24:] = 65535
    Image.fromarray(deep).save(folder / "c_deep.png")
    # Palette image, upscaled.
    Image.fromarray(np.tile(np.arange(0, 240, 10, dtype=np.uint8), (24, 1))).convert("P").save(
        folder / "d_palette.gif")

    data = read_image_folder(tmp_path)["all"]
    assert data.images.shape == (4, 1, 48, 48) and data.labels.tolist() == [3] * 4
    colour, rotated, deep_img, palette = (data.images[k, 0].float() for k in range(4))
    assert colour[:20, :20].mean() > 240
    assert colour[30:, 30:].mean() < 20
    assert colour[30:, :4].mean() < 20  # the green strip was cropped, not squeezed in
    assert rotated[:, 40:].mean() > 200 and rotated[:, :30].mean() < 30
    assert rotated[:8].mean() < 120  # not the unrotated band at the top
    assert deep_img[:, :20].mean() == pytest.approx(1000 / 257, abs=1)
    assert deep_img[:, 28:].mean() == 255
    assert palette[:, 0].mean() < 10 and palette[:, -1].mean() > 220


def test_big_jpeg_is_reduced(tmp_path):
    (tmp_path / "sad").mkdir()
    img = np.zeros((1200, 1600), np.uint8)
    img[:600] = 200
    Image.fromarray(img).save(tmp_path / "sad" / "photo.jpg")
    face = read_image_folder(tmp_path)["all"].images[0, 0].float()
    assert face[:20].mean() > 190 and face[28:].mean() < 10


def test_unknown_class_folder(tmp_path):
    write_image_folder(tmp_path, {"train": synthetic_faces(1)})
    (tmp_path / "train" / "contempt").mkdir()
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "train" / "contempt"))):
        read_image_folder(tmp_path)
    # Flat layout with one stray folder.
    flat = tmp_path / "flat"
    write_image_folder(flat, {"x": synthetic_faces(1)})
    (flat / "x" / "Kontempt").mkdir()
    with pytest.raises(DataError, match="Kontempt"):
        read_image_folder(flat / "x")


@pytest.mark.parametrize("name, content", [
    ("broken.png", None),                     # truncated PNG
    ("garbage.jpg", b"\xff\xd8\xff\xe0 not really a jpeg" * 3),
    ("notes.txt", b"these are my notes\n"),
    ("empty.png", b""),
])
def test_bad_file_in_class_folder(tmp_path, name, content):
    write_image_folder(tmp_path, {"test": synthetic_faces(1)})
    path = tmp_path / "test" / "fear" / name
    if content is None:
        good = tmp_path / "test" / "fear" / "2.png"
        content = good.read_bytes()[: len(good.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_image_folder(tmp_path)


def test_stray_files_and_empty_folders(tmp_path):
    write_image_folder(tmp_path, {"train": synthetic_faces(1)})
    stray = tmp_path / "train" / "loose.png"
    stray.write_bytes((tmp_path / "train" / "happy" / "3.png").read_bytes())
    with pytest.raises(DataError, match=re.escape(str(stray))):
        read_image_folder(tmp_path)
    stray.rename(tmp_path / "loose.png")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "loose.png"))):
        read_image_folder(tmp_path)
    (tmp_path / "loose.png").unlink()
    (tmp_path / "train" / "happy" / "nested").mkdir()
    with pytest.raises(DataError, match="nested"):
        read_image_folder(tmp_path)
    empty = tmp_path / "empty"
    (empty / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        read_image_folder(empty)
    with pytest.raises(DataError, match="no class folders"):
        read_image_folder(empty / "train" / "happy")


# --------------------------------------------------------------------------------------------
# load_split


def test_load_split_csv(tmp_path):
    train, public, private = synthetic_faces(2, 1), synthetic_faces(1, 2), synthetic_faces(1, 3)
    both = tmp_path / "both.csv"
    write_fer2013_csv(both, {"Training": train, "PublicTest": public, "PrivateTest": private})
    for split in ("train", "TRAIN", "Training", "training"):
        assert_same(load_split(both, split), train)
    for split in ("test", "Test", "PublicTest", "publictest"):
        assert_same(load_split(both, split), public)
    assert_same(load_split(both, "PrivateTest"), private)

    private_only = tmp_path / "private.csv.gz"
    write_fer2013_csv(private_only, {"Training": train, "PrivateTest": private})
    assert_same(load_split(private_only, "test"), private)

    train_only = tmp_path / "train_only.csv"
    write_fer2013_csv(train_only, {"Training": train})
    with pytest.raises(DataError, match=r"train_only\.csv.*PublicTest.*present: Training"):
        load_split(train_only, "test")
    with pytest.raises(DataError, match="present: Training"):
        load_split(train_only, "bogus")


def test_load_split_folders(tmp_path):
    a, b = synthetic_faces(1, 1), synthetic_faces(1, 2)
    write_image_folder(tmp_path / "long", {"Training": a, "Validation": b})
    assert_same(load_split(tmp_path / "long", "train"), a)
    assert_same(load_split(tmp_path / "long", "test"), b)
    assert_same(load_split(tmp_path / "long", "validation"), b)

    write_image_folder(tmp_path / "short", {"train": a, "test": b, "val": a})
    assert_same(load_split(tmp_path / "short", "Test"), b)  # "test" preferred over "val"
    assert_same(load_split(tmp_path / "short", "val"), a)
    with pytest.raises(DataError, match=r"split folders present: test, train, val"):
        load_split(tmp_path / "short", "holdout")

    # A flat class-folder layout serves every split.
    flat = tmp_path / "short" / "train"
    assert_same(load_split(flat, "train"), a)
    assert_same(load_split(flat, "test"), a)
    # ... but a split folder that happens to be called "all" is still a split.
    write_image_folder(tmp_path / "named_all", {"all": b})
    assert_same(load_split(tmp_path / "named_all", "all"), b)
    with pytest.raises(DataError, match="split folders present: all"):
        load_split(tmp_path / "named_all", "train")


def test_load_split_missing_path_lists_what_exists(tmp_path):
    write_fer2013_csv(tmp_path / "fer2013.csv", {"Training": synthetic_faces(1)})
    with pytest.raises(DataError, match=r"fer2013\.csv\.gz: no such file.*has: fer2013\.csv"):
        load_split(tmp_path / "fer2013.csv.gz", "train")
    with pytest.raises(DataError, match=r"no such file.*has: fer2013\.csv"):
        load_split(tmp_path / "nope" / "deeper", "train")


# --------------------------------------------------------------------------------------------
# Tensors


def test_normalize_denormalize():
    every = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = normalize(every)
    assert x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    assert x.flatten()[128].item() == pytest.approx(1 / 255, abs=1e-6)
    assert torch.equal(denormalize(x), every)
    assert torch.equal(denormalize(x + 0.003), every)  # rounds, not truncates
    out = denormalize(torch.tensor([-5.0, -1.0, 0.0, 1.0, 3.0], requires_grad=True))
    assert out.dtype == torch.uint8 and out.tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(TypeError):
        normalize(x)


def test_drop_blank():
    data = FaceData(
        torch.cat([faces(2, 3).images, faces(1, 4, value=0).images, faces(1, 5, value=200).images,
                   faces(1, 6).images]),
        torch.tensor([3, 3, 4, 5, 6]))
    almost = data.images.clone()
    almost[3, 0, 0, 0] = 201  # one pixel off: std 0.02, still blank
    data = FaceData(almost, data.labels)
    kept, removed = drop_blank(data)
    assert removed == 2 and kept.labels.tolist() == [3, 3, 6]
    assert torch.equal(kept.images, data.images[[0, 1, 4]])
    assert drop_blank(data, min_std=0.0)[1] == 0
    assert drop_blank(data, min_std=1e-6)[1] == 1
    same, none = drop_blank(synthetic_faces(2))
    assert none == 0 and len(same) == 14
    assert drop_blank(synthetic_faces(0))[1] == 0


# --------------------------------------------------------------------------------------------
# Synthetic faces


def test_synthetic_shape_determinism_speed():
    start = time.perf_counter()
    a = synthetic_faces(50, seed=3)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, elapsed
    assert a.images.shape == (350, 1, 48, 48) and a.images.dtype == torch.uint8
    assert a.labels.tolist()[:8] == [0, 1, 2, 3, 4, 5, 6, 0]
    assert a.class_counts() == [50] * 7
    assert_same(a, synthetic_faces(50, seed=3))
    assert not torch.equal(a.images, synthetic_faces(50, seed=4).images)
    assert len(synthetic_faces(0)) == 0
    # Samples vary within a class, and use a good part of the grey range.
    happy = a.images[a.labels == 3].float()
    assert (happy - happy.mean(0)).abs().mean() > 10
    assert a.images.min() < 40 and a.images.max() > 200


def test_synthetic_classes_are_learnable():
    """A linear classifier trained on one seed must recognise the classes of another."""
    torch.manual_seed(0)

    def features(data: FaceData) -> torch.Tensor:
        x = F.avg_pool2d(normalize(data.images), 2).flatten(1)
        return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)

    train, test = synthetic_faces(40, seed=0), synthetic_faces(20, seed=1)
    xa, xb = features(train), features(test)
    model = torch.nn.Linear(xa.shape[1], NUM_CLASSES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = F.cross_entropy(model(xa), train.labels) + 1e-3 * model.weight.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    accuracy = (model(xb).argmax(1) == test.labels).float().mean().item()
    assert accuracy > 0.6, accuracy  # chance is 1/7


# --------------------------------------------------------------------------------------------
# The real FER2013 file


@pytest.fixture(scope="module")
def real_fer():
    if not REAL_FER.is_file():
        pytest.skip(f"FER2013 not found at {REAL_FER} (set CCYCLEGAN_FER2013)")
    start = time.perf_counter()
    splits = read_fer2013_csv(REAL_FER)
    elapsed = time.perf_counter() - start
    print(f"\nread_fer2013_csv({REAL_FER.name}): {elapsed:.2f} s")
    return splits, elapsed


def test_real_fer2013(real_fer):
    splits, elapsed = real_fer
    assert elapsed < 20, f"loading took {elapsed:.1f} s"
    assert list(splits) == ["Training", "PublicTest"]
    train, test = splits["Training"], splits["PublicTest"]
    assert len(train) == 28709 and len(test) == 3589
    assert train.class_counts() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert test.class_counts() == [467, 56, 496, 895, 653, 415, 607]
    for data in (train, test):
        assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (1, 48, 48)
        assert data.images.is_contiguous() and data.labels.dtype == torch.int64
    assert train.labels[0] == 3 and train.images[0, 0, 0, :4].tolist() == [232, 232, 160, 122]


def test_real_fer2013_blank_faces(real_fer):
    splits, _ = real_fer
    black = {k: int((d.images.reshape(len(d), -1).amax(1) == 0).sum()) for k, d in splits.items()}
    assert black == {"Training": 11, "PublicTest": 1}  # the README's 12 all-black faces
    # Exactly constant images: the same 12.
    assert sum(drop_blank(d, min_std=1e-3)[1] for d in splits.values()) == 12
    # The default threshold also removes one flat grey non-face: Training index 1000 (file line
    # 1002), all values 126..131. It is blank too, so 13 in all.
    dropped = {k: drop_blank(d)[1] for k, d in splits.items()}
    assert dropped == {"Training": 12, "PublicTest": 1}
    flat = splits["Training"].images[1000].float()
    assert flat.std() < 1 and flat.min() >= 126 and flat.max() <= 131


def test_sharpness_flags_a_blurred_training_split():
    from PIL import ImageFilter

    from ccyclegan.core.data import blur_warning, sharpness

    sharp = synthetic_faces(5, seed=3)
    blurred = torch.stack([
        torch.from_numpy(np.array(Image.fromarray(img[0].numpy()).filter(
            ImageFilter.GaussianBlur(3))))[None] for img in sharp.images])
    soft = FaceData(blurred.contiguous(), sharp.labels.clone())
    assert sharpness(soft) < 0.5 * sharpness(sharp)
    msg = blur_warning(soft, sharp)
    assert msg is not None and "blurrier" in msg
    assert blur_warning(sharp, sharp) is None and blur_warning(sharp, soft) is None


def test_real_fer2013_is_version_2():
    """Version 1 of the shared file had blurred Training rows (median sharpness 3.3 against
    13.2 for PublicTest), and models trained on it learnt blurred faces. Version 2's are as
    sharp as the test rows, and nothing here undoes a blur any more."""
    if not REAL_FER.is_file():
        pytest.skip(f"FER2013 not found at {REAL_FER} (set CCYCLEGAN_FER2013)")
    assert hashlib.sha256(REAL_FER.read_bytes()).hexdigest() == FER2013_V2_SHA256


def test_real_fer2013_training_rows_are_sharp(real_fer):
    from ccyclegan.core.data import blur_warning, face_sharpness

    splits, _ = real_fer
    train, test = splits["Training"], splits["PublicTest"]
    s_train = float(face_sharpness(train.images).median())
    s_test = float(face_sharpness(test.images).median())
    print(f"median sharpness: Training {s_train:.2f}, PublicTest {s_test:.2f}")
    assert abs(s_train - s_test) < 0.2 * s_test
    assert blur_warning(train, test) is None
