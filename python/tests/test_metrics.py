"""Each DD-Ranking class and the functional API on the embedded data with the tiny recipe: the
reference's result keys, values that agree with the record's per-run numbers, and inputs of any
float dtype giving the same evaluation."""

import math

import numpy as np
import pytest

import ddr_fast
from ddr_fast.metrics import (AugmentationRobustScore, GeneralEvaluator, LabelRobustScoreHard,
                              LabelRobustScoreSoft)

from conftest import tiny

# Scores ×100 vs the record's fractions ×100: the same f64 numbers, so only float rounding of the
# ×100 separates them.
PCT_ATOL = 1e-9


def check_summary(res, name, key):
    """`<name>_mean/_std` equal 100 × mean / population std of the record's per-run `key`."""
    runs = [r[key] for r in res["ddr_fast"]["runs"]]
    assert math.isclose(res[f"{name}_mean"], 100 * np.mean(runs), abs_tol=PCT_ATOL)
    assert math.isclose(res[f"{name}_std"], 100 * np.std(runs), abs_tol=PCT_ATOL)


def test_version():
    assert ddr_fast.__version__ == ddr_fast._core.__version__ and ddr_fast.__version__.count(".") == 2


def test_lrs_hard(tmp_path, syn):
    images, labels = syn
    m = LabelRobustScoreHard(progress=False, **tiny(tmp_path))
    res = m.compute_metrics(image_tensor=images, hard_labels=labels, syn_lr=0.01)
    for name in ["hard_label_recovery", "improvement_over_random", "label_robust_score"]:
        assert math.isfinite(res[f"{name}_mean"]) and math.isfinite(res[f"{name}_std"])
    check_summary(res, "label_robust_score", "lrs")
    run = res["ddr_fast"]["runs"][0]
    # HLR = Acc(full, hard) − Acc(syn, hard), from the record's own accuracies.
    assert math.isclose(run["hlr"], run["acc"]["full_hard"] - run["acc"]["syn_hard"], abs_tol=1e-12)
    assert res["ddr_fast"]["timings"]["ran"] == 3  # syn, random subset, full data
    # syn_lr replaces the grid search for the synthetic set.
    assert run["lr"]["syn_hard"] == 0.01


def test_lrs_soft(tmp_path, syn, soft_logits, teacher_dir):
    images, _ = syn
    m = LabelRobustScoreSoft(progress=False, teacher_dir=str(teacher_dir),
                             teacher_model_names=["ConvNet-3-W8"], soft_label_criterion="sce",
                             **tiny(tmp_path))
    res = m.compute_metrics(image_tensor=images, soft_labels=soft_logits)
    check_summary(res, "label_robust_score", "lrs")
    check_summary(res, "improvement_over_random", "ior")
    with pytest.raises(ValueError, match="requires soft labels"):
        m.compute_metrics(image_tensor=images)


def test_ars(tmp_path, syn, soft_logits, teacher_dir):
    images, _ = syn
    m = AugmentationRobustScore(progress=False, teacher_dir=str(teacher_dir),
                                teacher_model_names=["ConvNet-3-W8"],
                                **tiny(tmp_path, data_aug_func="cutmix"))
    res = m.compute_metrics(image_tensor=images, soft_labels=soft_logits, ars_lambda=0.25)
    check_summary(res, "augmentation_robust_score", "ars")
    check_summary(res, "with_aug_scores", "with_aug")
    assert res["ddr_fast"]["config"]["gamma"] == 0.25


def test_general_evaluator(tmp_path, syn):
    images, labels = syn
    m = GeneralEvaluator(progress=False, **tiny(tmp_path))
    res = m.compute_metrics(image_tensor=images, labels=labels)
    check_summary(res, "accs", "accuracy")
    assert 0.0 <= res["accs_mean"] <= 100.0


def test_config_object_and_yaml(tmp_path, syn):
    """A Config (dict or DD-Ranking YAML) replaces the keywords, as in the reference."""
    images, _ = syn
    path = tmp_path / "cfg.yaml"
    path.write_text(f"""# DD-Ranking keys, plus ddr-fast's width / lr_grid / seed / full_epochs
dataset: embedded
ipc: 10
model_name: ConvNet-3
width: 8
num_eval: 1
lr_grid: [0.01]
num_epochs: 2
test_interval: 2
full_epochs: 1
syn_batch_size: 50
real_batch_size: 256
eval_full_data: true
data_aug_func: null
num_workers: 4
seed: 0
cache_dir: {tmp_path / "cache"}
""")
    cfg = ddr_fast.Config.from_file(str(path))
    assert cfg.get("width") == 8
    m = LabelRobustScoreHard(config=cfg, dataset="CIFAR10", progress=False)
    assert m.settings["dataset"] == "fashion-mnist-embedded"  # the Config won over the keyword
    a = m.compute_metrics(image_tensor=images)
    b = ddr_fast.evaluate(images, metric="lrs-hard", config=ddr_fast.Config(dict(tiny(tmp_path))), progress=False)
    # Equal settings and arrays: the second call is served from the first one's cache.
    assert b["ddr_fast"]["timings"]["cached"] == 3
    assert a["label_robust_score_mean"] == b["label_robust_score_mean"]


def test_dtypes_and_array_kinds_give_the_same_evaluation(tmp_path, syn):
    """float64 and float16-representable inputs reach the engine as the same float32 values: the
    cache key (a hash of those values) matches, so later calls reuse the first one's trainings."""
    images, labels = syn
    images16 = images.astype(np.float16)  # values exactly representable in float16
    keys = tiny(tmp_path)
    first = ddr_fast.evaluate(images16.astype(np.float32), labels, progress=False, **keys)
    assert first["ddr_fast"]["timings"]["ran"] == 3
    for variant in [images16, images16.astype(np.float64), np.asfortranarray(images16.astype(np.float32)),
                    images16.astype(np.float32).tolist()]:
        again = ddr_fast.evaluate(variant, labels, progress=False, **keys)
        assert again["ddr_fast"]["timings"]["ran"] == 0, type(variant)
        assert again["label_robust_score_mean"] == first["label_robust_score_mean"]


def test_image_path(tmp_path, syn):
    """The same set from a file (safetensors written by hand) as from memory: the same scores."""
    images, labels = syn
    keys = tiny(tmp_path)
    mem = ddr_fast.evaluate(images, labels, progress=False, **keys)
    path = tmp_path / "syn.safetensors"
    write_safetensors(path, {"images": images, "labels": labels})
    disk = ddr_fast.evaluate(image_path=path, progress=False, **keys)
    assert disk["label_robust_score_mean"] == mem["label_robust_score_mean"]


def write_safetensors(path, tensors):
    import json
    import struct
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {"float32": "F32", "int64": "I64"}[str(a.dtype)]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_torch_tensors(tmp_path, syn):
    """torch tensors (float32 and bfloat16) in, without going through a file. Needs torch: CI does
    not install it (see the README's manual check), so this test is skipped there."""
    torch = pytest.importorskip("torch")
    images, labels = syn
    keys = tiny(tmp_path)
    a = ddr_fast.evaluate(images, labels, progress=False, **keys)
    b = ddr_fast.evaluate(torch.from_numpy(images), torch.from_numpy(labels), progress=False, **keys)
    assert b["ddr_fast"]["timings"]["ran"] == 0 and a["label_robust_score_mean"] == b["label_robust_score_mean"]
    c = ddr_fast.evaluate(torch.from_numpy(images).bfloat16(), torch.from_numpy(labels), progress=False, **keys)
    assert math.isfinite(c["label_robust_score_mean"])
