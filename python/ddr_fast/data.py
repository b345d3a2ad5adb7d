"""Real datasets as numpy arrays, read and normalised by ddr-fast exactly as the engine trains on
them (``embedded``: the Fashion-MNIST subset built into ddr-fast, no download)."""

import numpy as np

from . import _core


def load_dataset(name: str = "embedded", split: str = "train", data_dir=None):
    """Returns (images (N, C, H, W) float32 normalised, labels (N,) int64)."""
    raw, shape, labels = _core.load_dataset(name, split, None if data_dir is None else str(data_dir))
    images = np.frombuffer(raw, dtype="<f4").reshape(shape)
    return images, np.asarray(labels, dtype=np.int64)


def first_per_class(images: np.ndarray, labels: np.ndarray, ipc: int):
    """The first ``ipc`` images of each class, class-major: a stand-in for a distilled set."""
    classes = int(labels.max()) + 1
    idx = np.concatenate([np.flatnonzero(labels == c)[:ipc] for c in range(classes)])
    return images[idx], labels[idx]
