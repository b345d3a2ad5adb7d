"""Every bad input raises its documented exception, naming the argument or key, before any
training: TypeError for a wrong dtype, ValueError for a wrong shape, a non-finite value,
mismatched labels, a bad setting; OSError for a missing file."""

import numpy as np
import pytest

import ddr_fast
from ddr_fast.metrics import LabelRobustScoreHard, LabelRobustScoreSoft

from conftest import tiny


def lrs(tmp_path):
    return LabelRobustScoreHard(progress=False, **tiny(tmp_path))


@pytest.mark.parametrize("bad, exc, words", [
    (lambda x: x[0], ValueError, ["image_tensor", "4-D", "(1, 28, 28)"]),          # wrong rank
    (lambda x: x.reshape(100, 784), ValueError, ["image_tensor", "4-D"]),
    (lambda x: (x * 100).astype(np.int32), TypeError, ["image_tensor", "int32"]),  # wrong dtype
    (lambda x: x.astype(bool), TypeError, ["image_tensor", "bool"]),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), ValueError,
     ["image_tensor", "nan", "(0, 0, 0, 7)"]),                                   # NaN images
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 9, np.inf, x), ValueError,
     ["image_tensor", "inf"]),
    (lambda x: x[:50], ValueError, ["image_tensor", "50 images", "IPC 10"]),       # wrong count
    (lambda x: np.repeat(x, 3, axis=1), ValueError, ["image_tensor", "3x28x28"]),  # wrong channels
    (lambda x: x[:0], ValueError, ["image_tensor", "N = 0"]),
    (lambda x: "images", TypeError, ["image_tensor"]),
    (lambda x: x.astype(np.float64) * 1e300, ValueError, ["image_tensor", "inf"]),  # overflows f32
])
def test_bad_images(tmp_path, syn, bad, exc, words):
    images, _ = syn
    with pytest.raises(exc) as e:
        lrs(tmp_path).compute_metrics(image_tensor=bad(images))
    for w in words:
        assert w in str(e.value), str(e.value)


@pytest.mark.parametrize("bad, exc, words", [
    (lambda l: l[:99], ValueError, ["hard_labels", "99 labels for 100 images"]),    # mismatched
    (lambda l: l.reshape(10, 10), ValueError, ["hard_labels", "1-D"]),
    (lambda l: l.astype(np.float32), TypeError, ["hard_labels", "integer"]),
    (lambda l: np.where(np.arange(100) == 5, 10, l), ValueError, ["out of range"]),  # class 10 of 10
    (lambda l: np.sort(l)[::-1] * 0, ValueError, ["class 0 has 100 images"]),        # unbalanced
])
def test_bad_hard_labels(tmp_path, syn, bad, exc, words):
    images, labels = syn
    with pytest.raises(exc) as e:
        lrs(tmp_path).compute_metrics(image_tensor=images, hard_labels=bad(labels))
    for w in words:
        assert w in str(e.value), str(e.value)


@pytest.mark.parametrize("bad, exc, words", [
    (lambda s: s[:, :5], ValueError, ["soft_labels", "[100, 10]"]),
    (lambda s: s[:10], ValueError, ["soft_labels", "10 rows for 100 images"]),
    (lambda s: s.astype(np.int64), TypeError, ["soft_labels", "floating-point"]),
    (lambda s: np.where(s > 1, np.nan, s), ValueError, ["soft_labels", "non-finite"]),
])
def test_bad_soft_labels(tmp_path, syn, soft_logits, teacher_dir, bad, exc, words):
    images, _ = syn
    m = LabelRobustScoreSoft(progress=False, teacher_dir=str(teacher_dir),
                             teacher_model_names=["ConvNet-3-W8"], **tiny(tmp_path))
    with pytest.raises(exc) as e:
        m.compute_metrics(image_tensor=images, soft_labels=bad(soft_logits))
    for w in words:
        assert w in str(e.value), str(e.value)


@pytest.mark.parametrize("over, words", [
    (dict(optimizer="rmsprop"), ["optimizer", "rmsprop"]),
    (dict(ipc=0), ["ipc"]),
    (dict(num_epochs="many"), ["num_epochs"]),
    (dict(model_name="ResNet-99"), ["model_name", "ResNet-99"]),
    (dict(dataset="SVHN"), ["dataset", "SVHN"]),
    (dict(eval_full_data=False), ["eval_full_data"]),
    (dict(im_size=(32, 32)), ["im_size"]),
    (dict(custom_train_trans=["RandomCrop"]), ["custom_train_trans"]),
])
def test_bad_settings_fail_at_construction(tmp_path, over, words):
    with pytest.raises(ValueError) as e:
        LabelRobustScoreHard(progress=False, **tiny(tmp_path, **over))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_unknown_setting_warns(tmp_path):
    with pytest.warns(UserWarning, match="'widht'"):
        LabelRobustScoreHard(progress=False, widht=8, **tiny(tmp_path))


def test_missing_image_path(tmp_path):
    with pytest.raises(OSError, match="nothing.safetensors"):
        lrs(tmp_path).compute_metrics(image_path=str(tmp_path / "nothing.safetensors"))


def test_exactly_one_source(tmp_path, syn):
    with pytest.raises(ValueError, match="image_tensor or image_path"):
        lrs(tmp_path).compute_metrics()
    with pytest.raises(ValueError, match="image_tensor or image_path"):
        lrs(tmp_path).compute_metrics(image_tensor=syn[0], image_path="x.pt")


def test_bad_syn_lr(tmp_path, syn):
    with pytest.raises(ValueError, match="syn_lr"):
        lrs(tmp_path).compute_metrics(image_tensor=syn[0], syn_lr=-1.0)
    with pytest.raises(TypeError, match="syn_lr"):
        lrs(tmp_path).compute_metrics(image_tensor=syn[0], syn_lr="fast")
