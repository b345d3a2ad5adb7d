"""``ddr_fast.evaluate``: the functional API, one call per evaluation."""

from . import _arrays
from ._common import check_settings, results, run_eval, translate


def evaluate(images=None, labels=None, soft_labels=None, metric="lrs-hard", *, image_path=None,
             syn_lr=None, config=None, pixel_space=False, progress=True, max_students=16,
             **settings) -> dict:
    """Scores a synthetic set and returns DD-Ranking's result keys plus ``ddr_fast`` (the record).

    images: (N, C, H, W) float tensor (numpy, torch, DLPack), normalised like the dataset unless
        ``pixel_space=True`` ([0, 1] pixels); or give ``image_path`` (safetensors, .pt, image folder).
    labels: (N,) integer class indices; None → class-major (image i has class i // ipc).
    soft_labels: (N, K) float stored soft labels (soft-label mode S).
    metric: "lrs-hard", "lrs-soft", "ars" or "acc".
    config: a :class:`ddr_fast.Config` (or dict) of DD-Ranking keys; ``settings`` override it.
    settings: DD-Ranking / ddr-fast config keys (dataset, ipc, num_epochs, lr_grid, width, seed,
        out_dir, cache_dir, lambda, gamma, ...), as in the YAML files.
    progress: True (a bar), False, or a callable progress(done, total) in training images.
    """
    keys = dict(getattr(config, "config", config) or {})
    keys.update(settings)
    keys["syn_lr"] = _arrays.scalar(syn_lr, "syn_lr") if syn_lr is not None else keys.get("syn_lr")
    keys = translate(keys)
    check_settings(keys, "evaluate()", metric)
    record = run_eval(keys, "evaluate()", metric, image_tensor=images, image_path=image_path,
                      hard_labels=labels, soft_labels=soft_labels, pixel_space=pixel_space,
                      progress=progress, max_students=max_students)
    return results(record["metric"], record)
