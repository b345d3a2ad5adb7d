"""DD-Ranking's metric classes over the ddr-fast engine: the reference's constructor keywords and
defaults, ``compute_metrics`` with the reference's arguments and result keys.

Differences from ``ddranking`` 0.2.0 (see the README, "Python"): scores use the paper's formula on
fractions (the reference exponentiates percentages) and are reported ×100; a ``Config`` leaves
absent keys at ddr-fast's defaults (the reference passes None); ``im_size`` defaults to the
dataset's own size and ``device`` to "auto"; extra keywords are ddr-fast's config keys (``width``,
``lr_grid``, ``seed``, ``test_interval``, ``full_epochs``, ``out_dir``, ``cache_dir``, ...); the
result also holds ``ddr_fast``, the whole record.
"""

from typing import List, Optional

from . import _arrays
from ._common import check_settings, results, run_eval, translate
from .config import Config


class _Metric:
    """The shared part: settings resolved and checked at construction (errors surface here, as in
    the reference), one evaluation per ``compute_metrics``."""

    METRIC = ""

    def __init__(self, config: Optional[Config], keys: dict, extra: dict,
                 progress=True, max_students: int = 16):
        if config is not None:
            # As the reference: a Config replaces the keyword arguments.
            keys = dict(getattr(config, "config", config))
        keys.update(extra)
        self._keys = translate(keys)
        self._label = f"{type(self).__name__}()"
        self.progress = progress
        self.max_students = max_students
        #: ddr-fast's resolved config (every setting, defaults included).
        self.settings = check_settings(self._keys, self._label, self.METRIC)

    def _compute(self, image_tensor, image_path, hard_labels=None, soft_labels=None,
                 syn_lr=None, weights=None) -> dict:
        keys = dict(self._keys)
        if syn_lr is not None:
            keys["syn_lr"] = _arrays.scalar(syn_lr, "syn_lr")
        keys.update({k: _arrays.scalar(v, k) for k, v in (weights or {}).items()})
        record = run_eval(keys, self._label, self.METRIC, image_tensor=image_tensor,
                          image_path=image_path, hard_labels=hard_labels,
                          soft_labels=soft_labels, progress=self.progress,
                          max_students=self.max_students)
        return results(self.METRIC, record)

    def _needs_soft(self, image_tensor, soft_labels, soft_recipe: bool):
        if (soft_recipe and self.settings["soft_label_mode"] == "S" and image_tensor is not None
                and soft_labels is None):
            raise ValueError("Soft label mode 'S' requires soft labels")


class LabelRobustScoreHard(_Metric):
    """LRS of a hard-label method (DD-Ranking's ``LabelRobustScoreHard``)."""

    METRIC = "lrs-hard"

    def __init__(self, config: Config = None, dataset: str = 'CIFAR10',
                 real_data_path: str = './dataset/', ipc: int = 10, model_name: str = 'ConvNet-3',
                 data_aug_func: str = 'cutmix', aug_params: dict = {'cutmix_p': 1.0},
                 optimizer: str = 'sgd', lr_scheduler: str = 'step', step_size: int = None,
                 weight_decay: float = 0.0005, momentum: float = 0.9, use_zca: bool = False,
                 num_eval: int = 5, im_size: tuple = None, num_epochs: int = 300,
                 real_batch_size: int = 256, syn_batch_size: int = 256,
                 use_torchvision: bool = False, num_workers: int = 4, save_path: str = None,
                 custom_train_trans=None, custom_val_trans=None, device: str = None,
                 dist: bool = False, random_data_format: str = 'tensor',
                 random_data_path: str = None, eval_full_data: bool = False,
                 progress=True, max_students: int = 16, **ddr_fast_settings):
        keys = dict(dataset=dataset, real_data_path=real_data_path, ipc=ipc,
                    model_name=model_name, data_aug_func=data_aug_func, aug_params=aug_params,
                    optimizer=optimizer, lr_scheduler=lr_scheduler, step_size=step_size,
                    weight_decay=weight_decay, momentum=momentum, use_zca=use_zca,
                    num_eval=num_eval, im_size=im_size, num_epochs=num_epochs,
                    real_batch_size=real_batch_size, syn_batch_size=syn_batch_size,
                    use_torchvision=use_torchvision, num_workers=num_workers,
                    save_path=save_path, custom_train_trans=custom_train_trans,
                    custom_val_trans=custom_val_trans, device=device, dist=dist,
                    random_data_format=random_data_format, random_data_path=random_data_path,
                    eval_full_data=eval_full_data)
        super().__init__(config, keys, ddr_fast_settings, progress, max_students)

    def compute_metrics(self, image_tensor=None, image_path: str = None, hard_labels=None,
                        syn_lr: float = None, lrs_lambda: float = 0.5) -> dict:
        return self._compute(image_tensor, image_path, hard_labels=hard_labels, syn_lr=syn_lr,
                             weights={"lambda": lrs_lambda})


class LabelRobustScoreSoft(_Metric):
    """LRS of a soft-label method (DD-Ranking's ``LabelRobustScoreSoft``)."""

    METRIC = "lrs-soft"

    def __init__(self, config: Config = None, dataset: str = 'CIFAR10',
                 real_data_path: str = './dataset/', ipc: int = 10, model_name: str = 'ConvNet-3',
                 soft_label_criterion: str = 'kl', loss_fn_kwargs: dict = None,
                 data_aug_func: str = 'cutmix', aug_params: dict = {'beta': 1.0},
                 soft_label_mode: str = 'S', optimizer: str = 'sgd', lr_scheduler: str = 'step',
                 step_size: int = None, weight_decay: float = 0.0005, momentum: float = 0.9,
                 num_eval: int = 5, im_size: tuple = None, num_epochs: int = 300,
                 use_zca: bool = False, use_aug_for_hard: bool = False,
                 random_data_format: str = 'tensors', random_data_path: str = None,
                 real_batch_size: int = 256, syn_batch_size: int = 256, save_path: str = None,
                 eval_full_data: bool = False, stu_use_torchvision: bool = False,
                 tea_use_torchvision: bool = False, num_workers: int = 4,
                 teacher_dir: str = './teacher_models', teacher_model_names: List[str] = None,
                 custom_train_trans=None, custom_val_trans=None, device: str = None,
                 dist: bool = False, progress=True, max_students: int = 16,
                 **ddr_fast_settings):
        keys = dict(dataset=dataset, real_data_path=real_data_path, ipc=ipc,
                    model_name=model_name, soft_label_criterion=soft_label_criterion,
                    loss_fn_kwargs=loss_fn_kwargs, data_aug_func=data_aug_func,
                    aug_params=aug_params, soft_label_mode=soft_label_mode, optimizer=optimizer,
                    lr_scheduler=lr_scheduler, step_size=step_size, weight_decay=weight_decay,
                    momentum=momentum, num_eval=num_eval, im_size=im_size,
                    num_epochs=num_epochs, use_zca=use_zca, use_aug_for_hard=use_aug_for_hard,
                    random_data_format=random_data_format, random_data_path=random_data_path,
                    real_batch_size=real_batch_size, syn_batch_size=syn_batch_size,
                    save_path=save_path, eval_full_data=eval_full_data,
                    stu_use_torchvision=stu_use_torchvision,
                    tea_use_torchvision=tea_use_torchvision, num_workers=num_workers,
                    teacher_dir=teacher_dir, teacher_model_names=teacher_model_names,
                    custom_train_trans=custom_train_trans, custom_val_trans=custom_val_trans,
                    device=device, dist=dist)
        super().__init__(config, keys, ddr_fast_settings, progress, max_students)

    def compute_metrics(self, image_tensor=None, image_path: str = None, soft_labels=None,
                        syn_lr: float = None, lrs_lambda: float = 0.5) -> dict:
        self._needs_soft(image_tensor, soft_labels, soft_recipe=True)
        return self._compute(image_tensor, image_path, soft_labels=soft_labels, syn_lr=syn_lr,
                             weights={"lambda": lrs_lambda})


class AugmentationRobustScore(_Metric):
    """ARS (DD-Ranking's ``AugmentationRobustScore``); ``ars_lambda`` is ddr-fast's ``gamma``."""

    METRIC = "ars"

    def __init__(self, config: Config = None, dataset: str = 'CIFAR10',
                 real_data_path: str = './dataset/', ipc: int = 10, model_name: str = 'ConvNet-3',
                 data_aug_func: str = 'cutmix', aug_params: dict = {'beta': 1.0},
                 label_type: str = 'soft', soft_label_mode: str = 'S',
                 soft_label_criterion: str = 'kl', optimizer: str = 'sgd',
                 lr_scheduler: str = 'step', loss_fn_kwargs: dict = None, step_size: int = None,
                 weight_decay: float = 0.0005, momentum: float = 0.9, num_eval: int = 5,
                 im_size: tuple = None, num_epochs: int = 300, use_zca: bool = False,
                 batch_size: int = 256, save_path: str = None, stu_use_torchvision: bool = False,
                 tea_use_torchvision: bool = False, num_workers: int = 4,
                 teacher_dir: str = './teacher_models', teacher_model_names: List[str] = None,
                 random_data_path: str = None, random_data_format: str = 'image',
                 custom_train_trans=None, custom_val_trans=None, device: str = None,
                 dist: bool = False, progress=True, max_students: int = 16,
                 **ddr_fast_settings):
        keys = dict(dataset=dataset, real_data_path=real_data_path, ipc=ipc,
                    model_name=model_name, data_aug_func=data_aug_func, aug_params=aug_params,
                    label_type=label_type, soft_label_mode=soft_label_mode,
                    soft_label_criterion=soft_label_criterion, optimizer=optimizer,
                    lr_scheduler=lr_scheduler, loss_fn_kwargs=loss_fn_kwargs,
                    step_size=step_size, weight_decay=weight_decay, momentum=momentum,
                    num_eval=num_eval, im_size=im_size, num_epochs=num_epochs, use_zca=use_zca,
                    batch_size=batch_size, save_path=save_path,
                    stu_use_torchvision=stu_use_torchvision,
                    tea_use_torchvision=tea_use_torchvision, num_workers=num_workers,
                    teacher_dir=teacher_dir, teacher_model_names=teacher_model_names,
                    random_data_path=random_data_path, random_data_format=random_data_format,
                    custom_train_trans=custom_train_trans, custom_val_trans=custom_val_trans,
                    device=device, dist=dist)
        super().__init__(config, keys, ddr_fast_settings, progress, max_students)

    def compute_metrics(self, image_tensor=None, image_path: str = None, soft_labels=None,
                        syn_lr: float = None, ars_lambda: float = 0.5) -> dict:
        self._needs_soft(image_tensor, soft_labels, self.settings["label_type"] == "soft")
        return self._compute(image_tensor, image_path, soft_labels=soft_labels, syn_lr=syn_lr,
                             weights={"gamma": ars_lambda})


class GeneralEvaluator(_Metric):
    """Tuned accuracy of a synthetic set with its own recipe (DD-Ranking's ``GeneralEvaluator``).
    The reference 0.2.0 returns nothing; this returns ``accs_mean`` / ``accs_std`` (percent)."""

    METRIC = "acc"

    def __init__(self, config: Config = None, dataset: str = 'CIFAR10',
                 real_data_path: str = './dataset', ipc: int = 10, model_name: str = 'ConvNet-3',
                 use_soft_label: bool = False, optimizer: str = 'adamw',
                 lr_scheduler: str = 'cosine', weight_decay: float = 0.01, momentum: float = 0.9,
                 step_size: int = None, data_aug_func: str = 'dsa', aug_params: dict = None,
                 soft_label_mode: str = 'M', soft_label_criterion: str = 'kl',
                 loss_fn_kwargs: dict = None, num_eval: int = 5, im_size: tuple = None,
                 num_epochs: int = 300, batch_size: int = 256, use_zca: bool = False,
                 stu_use_torchvision: bool = False, tea_use_torchvision: bool = False,
                 teacher_dir: str = './teacher_models', teacher_model_names: List[str] = None,
                 custom_train_trans=None, custom_val_trans=None, num_workers: int = 4,
                 save_path: str = None, dist: bool = False, device: str = None,
                 progress=True, max_students: int = 16, **ddr_fast_settings):
        keys = dict(dataset=dataset, real_data_path=real_data_path, ipc=ipc,
                    model_name=model_name, use_soft_label=use_soft_label, optimizer=optimizer,
                    lr_scheduler=lr_scheduler, weight_decay=weight_decay, momentum=momentum,
                    step_size=step_size, data_aug_func=data_aug_func, aug_params=aug_params,
                    soft_label_mode=soft_label_mode, soft_label_criterion=soft_label_criterion,
                    loss_fn_kwargs=loss_fn_kwargs, num_eval=num_eval, im_size=im_size,
                    num_epochs=num_epochs, batch_size=batch_size, use_zca=use_zca,
                    stu_use_torchvision=stu_use_torchvision,
                    tea_use_torchvision=tea_use_torchvision, teacher_dir=teacher_dir,
                    teacher_model_names=teacher_model_names,
                    custom_train_trans=custom_train_trans, custom_val_trans=custom_val_trans,
                    num_workers=num_workers, save_path=save_path, dist=dist, device=device)
        super().__init__(config, keys, ddr_fast_settings, progress, max_students)

    def compute_metrics(self, image_tensor=None, image_path: str = None, labels=None,
                        syn_lr=None) -> dict:
        soft = self.settings["label_type"] == "soft"
        self._needs_soft(image_tensor, labels, soft)
        return self._compute(image_tensor, image_path,
                             hard_labels=None if soft else labels,
                             soft_labels=labels if soft else None, syn_lr=syn_lr)


__all__ = ["LabelRobustScoreHard", "LabelRobustScoreSoft", "AugmentationRobustScore",
           "GeneralEvaluator"]
