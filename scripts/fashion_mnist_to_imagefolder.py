#!/usr/bin/env python3
"""Export Fashion-MNIST (Debian's `dataset-fashion-mnist` package) as an ImageFolder.

    apt-get install dataset-fashion-mnist
    python3 scripts/fashion_mnist_to_imagefolder.py OUT [--per-class-train N] [--per-class-valid M]

Writes OUT/train/<0..9>/*.png (from the 60,000 training images), OUT/valid/<0..9>/*.png
(from the 10,000 test images) and OUT/cat_to_name.json with the class names. Standard
library only (gzip, struct, zlib): no PIL, no network. The first N / M images of each class
are taken, in file order, so the export is deterministic.
"""

import argparse
import gzip
import json
import os
import struct
import zlib

SRC = "/usr/share/datasets/fashion-mnist"
NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:  # images
        rows, cols = struct.unpack(">II", data[8:16])
        size = rows * cols
        return [(data[16 + i * size : 16 + (i + 1) * size], cols, rows) for i in range(n)]
    if magic == 2049:  # labels
        return list(data[8 : 8 + n])
    raise ValueError(f"{path}: unknown IDX magic {magic}")


def png_gray(pixels, width, height):
    raw = b"".join(b"\x00" + pixels[y * width : (y + 1) * width] for y in range(height))

    def chunk(kind, body):
        c = struct.pack(">I", len(body)) + kind + body
        return c + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def export(images, labels, out, per_class):
    count = [0] * 10
    for i, ((pix, w, h), label) in enumerate(zip(images, labels)):
        if count[label] >= per_class:
            continue
        d = os.path.join(out, str(label))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i:05d}.png"), "wb") as f:
            f.write(png_gray(pix, w, h))
        count[label] += 1
    return sum(count)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("out")
    p.add_argument("--per-class-train", type=int, default=6000)
    p.add_argument("--per-class-valid", type=int, default=1000)
    a = p.parse_args()
    train = export(
        read_idx(f"{SRC}/train-images-idx3-ubyte.gz"),
        read_idx(f"{SRC}/train-labels-idx1-ubyte.gz"),
        os.path.join(a.out, "train"),
        a.per_class_train,
    )
    valid = export(
        read_idx(f"{SRC}/t10k-images-idx3-ubyte.gz"),
        read_idx(f"{SRC}/t10k-labels-idx1-ubyte.gz"),
        os.path.join(a.out, "valid"),
        a.per_class_valid,
    )
    with open(os.path.join(a.out, "cat_to_name.json"), "w") as f:
        json.dump({str(i): n for i, n in enumerate(NAMES)}, f, indent=1)
    print(f"wrote {train} train and {valid} valid images to {a.out}")


if __name__ == "__main__":
    main()
