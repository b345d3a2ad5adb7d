#!/usr/bin/env python3
"""Build the Fashion-MNIST subset that ddr-fast embeds in its binary (src/data/embedded.rs).

Input: the four official IDX .gz files of Fashion-MNIST (Zalando SE, MIT licence), e.g. from the
Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist) or the official archive.
Output: data/embedded/fmnist-{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz holding, per class,
the first TRAIN_PER_CLASS training images and the first TEST_PER_CLASS test images in file order,
then grouped class by class (class-major). No downloads; standard library only.

Usage: python3 tools/make_embedded_fmnist.py [SRC_DIR] [OUT_DIR]
"""
import gzip
import os
import struct
import sys

TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 100
CLASSES = 10


def read_idx(path, magic, ndim):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    m = struct.unpack(">I", raw[:4])[0]
    if m != magic:
        sys.exit(f"{path}: magic {m:#x}, expected {magic:#x}")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = raw[4 + 4 * ndim :]
    size = 1
    for d in dims:
        size *= d
    if len(data) != size:
        sys.exit(f"{path}: {len(data)} data bytes, header says {size}")
    return dims, data


def subset(src, prefix, per_class):
    (n, h, w), images = read_idx(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz"), 0x803, 3)
    (nl,), labels = read_idx(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz"), 0x801, 1)
    assert n == nl, "image and label counts differ"
    picked = [[] for _ in range(CLASSES)]
    for i, lab in enumerate(labels):
        if len(picked[lab]) < per_class:
            picked[lab].append(i)
    order = [i for c in range(CLASSES) for i in picked[c]]
    assert len(order) == CLASSES * per_class, "not enough images per class"
    px = h * w
    img = b"".join(images[i * px : (i + 1) * px] for i in order)
    lab = bytes(labels[i] for i in order)
    return (len(order), h, w), img, lab


def write_gz(path, payload):
    # mtime=0 so the committed bytes do not depend on when the tool ran
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(payload)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "data", "embedded")
    os.makedirs(out, exist_ok=True)
    for prefix, per_class in [("train", TRAIN_PER_CLASS), ("t10k", TEST_PER_CLASS)]:
        (n, h, w), img, lab = subset(src, prefix, per_class)
        write_gz(os.path.join(out, f"fmnist-{prefix}-images-idx3-ubyte.gz"), struct.pack(">IIII", 0x803, n, h, w) + img)
        write_gz(os.path.join(out, f"fmnist-{prefix}-labels-idx1-ubyte.gz"), struct.pack(">II", 0x801, n) + lab)
        print(f"{prefix}: {n} images of {h}x{w}")


if __name__ == "__main__":
    main()
