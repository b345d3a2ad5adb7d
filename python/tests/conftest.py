"""Shared fixtures: a tiny recipe on the embedded Fashion-MNIST subset (so each evaluation takes
seconds on a 2-core CPU), a class-major IPC-10 "distilled" set taken from it, and a teacher."""

import numpy as np
import pytest

import ddr_fast
from ddr_fast import _core
from ddr_fast.data import first_per_class, load_dataset

IPC = 10
CLASSES = 10


def tiny(tmp_path, **over):
    """DD-Ranking keys for a seconds-long evaluation, with this test's own cache. Width 8, one run,
    one learning rate, 2 epochs (1 for full data): it shows the pipeline, not a meaningful score."""
    keys = dict(dataset="embedded", ipc=IPC, model_name="ConvNet-3", width=8, num_eval=1,
                lr_grid=[0.01], num_epochs=2, test_interval=2, full_epochs=1, syn_batch_size=50,
                real_batch_size=256, eval_full_data=True, data_aug_func=None,
                cache_dir=str(tmp_path / "cache"), seed=0)
    keys.update(over)
    return keys


@pytest.fixture(scope="session")
def syn():
    """(images (100, 1, 28, 28) float32 normalised, labels (100,) int64), class-major."""
    images, labels = load_dataset("embedded", "train")
    return first_per_class(images, labels, IPC)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("teachers")
    _core.write_random_teacher(str(d / "ConvNet-3-W8.safetensors"), "ConvNet-3-W8", 1, 28, CLASSES, seed=3)
    return d


@pytest.fixture
def soft_logits(syn):
    """(100, 10) stored soft labels: a smoothed one-hot of the true class."""
    _, labels = syn
    s = np.full((len(labels), CLASSES), -1.0, dtype=np.float32)
    s[np.arange(len(labels)), labels] = 2.0
    return s
