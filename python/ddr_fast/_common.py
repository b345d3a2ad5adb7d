"""What the metric classes and ``evaluate`` share: settings → ddr-fast config, one evaluation, and
the record → DD-Ranking's result keys."""

import json
import os
import warnings

import numpy as np

from . import _arrays, _core, _run


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if hasattr(v, "item"):  # a one-element torch tensor
        return v.item()
    raise TypeError(f"cannot pass a {type(v).__name__} as a setting")


def translate(keys: dict) -> dict:
    """DD-Ranking keys as ddr-fast's config reader takes them. None means "not given" (the
    reference's keyword default or an absent Config key): ddr-fast's default applies; except
    ``data_aug_func=None``, which is no augmentation, as in the reference. Two keys of
    the reference's ARS / GeneralEvaluator are renamed: ``batch_size`` (the synthetic and random
    subset trainings) is ``syn_batch_size``, ``use_soft_label`` is ``label_type``."""
    out = {k: v for k, v in keys.items() if v is not None}
    if "data_aug_func" in keys and keys["data_aug_func"] is None:
        out["data_aug_func"] = "none"  # the reference trains without augmentation on None
    if "batch_size" in out:
        out.setdefault("syn_batch_size", out.pop("batch_size"))
    if "use_soft_label" in out:
        out.setdefault("label_type", "soft" if out.pop("use_soft_label") else "hard")
    return out


def settings_text(keys: dict) -> str:
    return json.dumps(keys, default=_json_default)


def check_settings(keys: dict, label: str, metric: str) -> dict:
    """ddr-fast's config for these keys (ValueError naming the key when one is bad); warnings
    (unknown or ignored keys) go through the warnings module."""
    cfg, warns = _core.settings(settings_text(keys), label, metric)
    for w in warns:
        warnings.warn(w, stacklevel=3)
    return json.loads(cfg)


def run_eval(keys, label, metric, image_tensor=None, image_path=None, hard_labels=None,
             soft_labels=None, pixel_space=False, progress=True, max_students=16) -> dict:
    """One evaluation; returns the record (result.json's content: fractions)."""
    if (image_tensor is None) == (image_path is None):
        raise ValueError("Either image_tensor or image_path must be provided (exactly one)")
    images = labels = soft = None
    if image_tensor is not None:
        images = _arrays.images_nchw(image_tensor, "image_tensor")
        n = images.shape[0]
        if hard_labels is not None:
            labels = _arrays.hard_labels(hard_labels, n)
        if soft_labels is not None:
            soft = _arrays.soft_labels(soft_labels, n)
    job = _core.start(settings_text(keys), label, metric,
                      image_path=None if image_path is None else os.fspath(image_path),
                      images=images, labels=labels, soft_labels=soft,
                      pixel_space=bool(pixel_space), max_students=int(max_students))
    return _run.run(job, progress)


# DD-Ranking's result keys per metric, and the ddr-fast summary entry each comes from.
RESULT_KEYS = {
    "lrs-hard": [("hard_label_recovery", "hlr"), ("improvement_over_random", "ior"),
                 ("label_robust_score", "lrs")],
    "ars": [("with_aug_scores", "with_aug"), ("without_aug_scores", "without_aug"),
            ("augmentation_robust_score", "ars")],
    "acc": [("accs", "accuracy")],
}
RESULT_KEYS["lrs-soft"] = RESULT_KEYS["lrs-hard"]


def results(metric: str, record: dict) -> dict:
    """DD-Ranking's keys (``<name>_mean`` / ``<name>_std``), ×100 as the reference reports them
    (accuracies in percent), computed with the paper's formula on fractions; plus ``ddr_fast``,
    the whole record (every value a fraction, per-run accuracies, learning rates, timings)."""
    out = {}
    summary = record["summary"]
    for name, key in RESULT_KEYS[metric]:
        out[f"{name}_mean"] = 100.0 * summary[key]["mean"]
        out[f"{name}_std"] = 100.0 * summary[key]["std"]
    out["ddr_fast"] = record
    return out
