"""Pack FER2013's Training rows small enough to travel to a lent GPU machine (its working tree
may carry 64 MiB; the CSV is 86 MB): uint8 faces with a per-row delta filter, xz-compressed
(about 47 MB), and back to a Kaggle-schema CSV there.

    python experiments/gpu/pack_data.py pack ../shared/data/fer2013/fer2013.csv.gz gpu_data/train.xz
    python experiments/gpu/pack_data.py unpack gpu_data/train.xz /tmp/fer2013_train.csv
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import struct

import numpy as np
import torch

from ccyclegan.core.data import FaceData, load_split, write_fer2013_csv

MAGIC = b"CCYFER1\n"


def pack(csv: str, out: str) -> None:
    data = load_split(csv, "train")
    x = data.images.numpy()[:, 0].astype(np.int16)  # [N, 48, 48]
    rows = np.diff(x, axis=-1, prepend=0).astype(np.uint8)  # PNG's "sub" filter, mod 256
    body = data.labels.numpy().astype(np.uint8).tobytes() + rows.tobytes()
    digest = hashlib.sha256(data.images.numpy().tobytes()).digest()
    with open(out, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(data)) + digest)
        f.write(lzma.compress(body, preset=6))
    print(f"{out}: {len(data)} Training faces")


def unpack(path: str, out: str) -> None:
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + 4 + 32)
        if head[:len(MAGIC)] != MAGIC:
            raise SystemExit(f"{path}: not a packed FER2013 file")
        (n,) = struct.unpack("<I", head[len(MAGIC):len(MAGIC) + 4])
        body = lzma.decompress(f.read())
    labels = np.frombuffer(body[:n], np.uint8).astype(np.int64)
    rows = np.frombuffer(body[n:], np.uint8).reshape(n, 48, 48)
    images = (np.cumsum(rows.astype(np.int64), axis=-1) % 256).astype(np.uint8)[:, None]
    if hashlib.sha256(images.tobytes()).digest() != head[len(MAGIC) + 4:]:
        raise SystemExit(f"{path}: checksum mismatch after unpacking")
    write_fer2013_csv(out, {"Training": FaceData(torch.from_numpy(images.copy()),
                                                 torch.from_numpy(labels))})
    print(f"{out}: {n} Training faces")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("verb", choices=("pack", "unpack"))
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args()
    (pack if a.verb == "pack" else unpack)(a.src, a.dst)
