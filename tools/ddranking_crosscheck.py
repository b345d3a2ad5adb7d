#!/usr/bin/env python3
"""Cross-check ddr-fast against DD-Ranking's own metric classes (the `ddranking` 0.2.0 package).

Both sides evaluate the same small configurations on real CIFAR-10, and every reported quantity
(tuned accuracy of each training, HLR, IOR, LRS, ARS) is compared run-distribution against
run-distribution:

  * LRS-hard  (DSA, SGD + StepLR)                         LabelRobustScoreHard
  * LRS-soft  mode M with a teacher (KL, DSA, SGD)        LabelRobustScoreSoft
  * ARS       soft labels, mode M (KL, CutMix, AdamW)     AugmentationRobustScore
  * full-data accuracy (the reference's REAL_DATA_TRAINING_CONFIG recipe), separately.
  * `seeds`: LRS-hard's hard-label training of the synthetic set alone, at one learning rate
    (--seeds-lr), with DSA and without, over --seeds-runs runs per side. Many runs of one training
    resolve a small difference that 5 runs of the lr search cannot (see the README).

The "synthetic" set is the first IPC images of each class of the real training set (a fixed set,
so only the training randomness differs between runs). Sized for a shared 2-core CPU: ConvNet-3 at
width 16 (the reference hard-codes 128: patched, see below), 20 epochs, the full lr grid, 5 runs
per side. The reference's randomness is seeded per run (`set_seed(1000 + i)`) instead of its
time-based seed; ddr-fast runs use seeds 0..4.

Tolerance: for each quantity, |mean_ref − mean_ddr| ≤ max(3·SE, 1.0 point), SE the Welch standard
error of the difference of the two means (sample std, ddof 1, over runs); 3·SE is a ~99.7% band
for two independent samples of the same distribution, and the 1-point floor covers quantities
whose spread over 5 runs underestimates their noise (a single test of 10,000 images has a
binomial std of ~0.5 point by itself). Values in percent (accuracies × 100); LRS/ARS × 100.

Minimal patches of the reference, each needed to run it at all here (printed when applied):
  1. `ConvNet(net_width=128)` → the width given by --width (get_convnet has no width argument).
  2. `set_seed()` (seeded from the clock) → set_seed(1000 + run).
  3. `get_random_data_tensors` called without `class_map` by LabelRobustScoreSoft and
     AugmentationRobustScore (its arguments shift and it crashes) → called with the identity map.
  4. `save_results` → not called (LabelRobustScoreHard appends each LRS twice, so pandas refuses
     the unequal columns; the CSV is not compared).
  5. `REAL_DATA_ACC_CACHE['CIFAR10-ConvNet-3']` → --full-acc (the key is absent; without it
     `eval_full_data: false` raises). ddr-fast gets the same value through --full-acc, and the
     full-data training itself is compared in its own section.
  6. torchvision's CIFAR10 md5 check → skipped: the python batches are re-made from the binary
     files of --data-dir (byte-identical pixels), with no network to download them.
Config keys the reference reads without a default (`num_workers`, `custom_*_trans`, `im_size`,
`aug_params.latestseed`, ...) are set in the YAML, which ddr-fast reads too.

The reference's LRS/ARS apply exp() to percent values; the table compares ddr-fast's LRS/ARS
with the paper's formula applied to the reference's own accuracies (as fractions).

Usage (installs nothing; needs a Python with ddranking, torch, torchvision, safetensors, pyyaml):
  python tools/ddranking_crosscheck.py --ddr target/release/ddr-fast \\
      --data-dir ../shared/data/cifar10 --work /tmp/xc --test-images 2000 --full \\
      [--side prepare|ref|ddr|compare|all] [--metrics lrs_hard lrs_soft ars]
The sides and metrics can run as separate processes (each writes <side>_<metric>.json);
`--metrics --full` (no names) runs the full-data comparison alone, `--metrics seeds` the focused
synthetic-set comparison.
"""

import argparse
import json
import math
import os
import pickle
import subprocess
import sys
import time

import numpy as np

METRICS = ["lrs_hard", "lrs_soft", "ars"]
# Per-run quantities of each metric, in the order the reference computes them.
QUANTITIES = {
    "lrs_hard": ["syn_hard", "rdm_recipe", "hlr", "ior", "lrs"],
    "lrs_soft": ["syn_hard", "syn_recipe", "rdm_recipe", "hlr", "ior", "lrs"],
    "ars": ["syn_aug", "rdm_aug", "syn_noaug", "rdm_noaug", "with_aug", "without_aug", "ars"],
    # dsa: best of the tests at epochs 10 and 20 (what LRS-hard keeps); dsa_last: the epoch-20
    # test alone (LRS-soft tests every 20 epochs); noaug: best test, no augmentation.
    "seeds": ["dsa", "dsa_last", "noaug"],
}
# Optional sections: run only when named in --metrics.
EXTRA = ["seeds"]
MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.2023, 0.1994, 0.2010]
TOL_SE = 3.0
TOL_FLOOR = 1.0


def yaml_for(metric, a, work):
    """The DD-Ranking YAML of one metric (both sides read it)."""
    common = {
        "dataset": "CIFAR10",
        "real_data_path": os.path.join(work, "torchvision"),
        "ipc": a.ipc,
        "im_size": [32, 32],
        "model_name": "ConvNet-3",
        "use_zca": False,
        "num_eval": a.runs,
        "num_epochs": a.epochs,
        "num_workers": 0,
        "custom_train_trans": None,
        "custom_val_trans": None,
        "device": "cpu",
        "dist": False,
        "random_data_format": "tensor",
        "random_data_path": os.path.join(work, "random_data"),
        "save_path": os.path.join(work, f"{metric}.csv"),
    }
    dsa = {
        "flip": 0.5, "rotate": 15.0, "saturation": 2.0, "brightness": 1.0, "contrast": 0.5,
        "scale": 1.2, "crop": 0.125, "cutout": 0.5, "latestseed": -1,
    }
    teacher = {
        "teacher_dir": os.path.join(work, "teachers"),
        "teacher_model_names": [f"ConvNet-3-W{a.width}"],
        "soft_label_mode": "M",
        "soft_label_criterion": "kl",
        "loss_fn_kwargs": {"temperature": 4.0, "scale_loss": False},
        "stu_use_torchvision": False,
        "tea_use_torchvision": False,
    }
    if metric == "lrs_hard":
        c = dict(common, data_aug_func="dsa", aug_params=dsa, optimizer="sgd", lr_scheduler="step",
                 step_size=a.epochs // 2, weight_decay=0.0005, momentum=0.9, syn_batch_size=256,
                 real_batch_size=256, eval_full_data=False, use_torchvision=False)
    elif metric == "lrs_soft":
        c = dict(common, **teacher, data_aug_func="dsa", aug_params=dsa, optimizer="sgd",
                 lr_scheduler="step", step_size=a.epochs // 2, weight_decay=0.0005, momentum=0.9,
                 syn_batch_size=256, real_batch_size=256, eval_full_data=False,
                 use_aug_for_hard=True, default_lr=0.01)
    else:
        # ARS passes no step_size to its scheduler: StepLR would fail, so cosine.
        c = dict(common, **teacher, label_type="soft", data_aug_func="cutmix",
                 aug_params={"beta": 1.0}, optimizer="adamw", lr_scheduler="cosine",
                 weight_decay=0.01, momentum=0.9, batch_size=256)
    return c


def write_yaml(path, cfg, metric):
    import yaml
    head = {"lrs_hard": "lrs-hard", "lrs_soft": "lrs-soft", "ars": "ars"}[metric]
    with open(path, "w") as f:
        f.write(f"# generated by tools/ddranking_crosscheck.py; metric for ddr-fast\n")
        yaml.safe_dump(dict(cfg, metric=head), f, sort_keys=False)


def read_cifar_binary(data_dir):
    def read(name):
        raw = np.fromfile(os.path.join(data_dir, name), dtype=np.uint8).reshape(-1, 3073)
        return raw[:, 1:].copy(), raw[:, 0].astype(np.int64)
    xs, ys = zip(*[read(f"data_batch_{i}.bin") for i in range(1, 6)])
    tx, ty = read("test_batch.bin")
    return np.concatenate(xs), np.concatenate(ys), tx, ty


def prepare(a, work):
    """torchvision-style python batches, the synthetic set (both formats) and a teacher; with
    --test-images, both sides test on the first that many test images (a binary copy for ddr-fast,
    training files linked)."""
    import torch
    x, y, tx, ty = read_cifar_binary(a.data_dir)
    small = os.path.join(work, "cifar10")
    os.makedirs(small, exist_ok=True)
    for i in range(1, 6):
        link = os.path.join(small, f"data_batch_{i}.bin")
        if not os.path.exists(link):
            os.symlink(os.path.join(a.data_dir, f"data_batch_{i}.bin"), link)
    tx, ty = tx[: a.test_images], ty[: a.test_images]
    rec = np.concatenate([ty.astype(np.uint8)[:, None], tx], axis=1)
    rec.tofile(os.path.join(small, "test_batch.bin"))
    d = os.path.join(work, "torchvision", "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    for i in range(5):
        sl = slice(10000 * i, 10000 * (i + 1))
        with open(os.path.join(d, f"data_batch_{i + 1}"), "wb") as f:
            pickle.dump({"data": x[sl], "labels": y[sl].tolist()}, f)
    with open(os.path.join(d, "test_batch"), "wb") as f:
        pickle.dump({"data": tx, "labels": ty.tolist()}, f)
    with open(os.path.join(d, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    # Synthetic set: the first IPC images of each class, class-major, in [0, 1] pixels.
    idx = np.concatenate([np.nonzero(y == c)[0][: a.ipc] for c in range(10)])
    syn = x[idx].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    np.save(os.path.join(work, "syn_pixels.npy"), syn)
    from safetensors.numpy import save_file
    save_file({"images": syn, "labels": np.repeat(np.arange(10), a.ipc).astype(np.int64)},
              os.path.join(work, "syn.safetensors"), metadata={"pixel_space": "true"})
    # Teacher: the reference's ConvNet-3 at the same width, trained briefly on real images.
    tdir = os.path.join(work, "teachers", "CIFAR10", f"ConvNet-3-W{a.width}")
    tpath = os.path.join(tdir, "ckpt_best.pt")
    if not os.path.exists(tpath):
        from ddranking.utils.networks import ConvNet
        torch.manual_seed(0)
        net = ConvNet(channel=3, num_classes=10, net_width=a.width, net_depth=3, net_act="relu",
                      net_norm="instancenorm", net_pooling="avgpooling", im_size=(32, 32))
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        xt = (torch.tensor(x[:20000]).view(-1, 3, 32, 32).float() / 255 - mean) / std
        yt = torch.tensor(y[:20000])
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        for epoch in range(a.teacher_epochs):
            perm = torch.randperm(len(xt))
            for b in range(0, len(xt), 256):
                i = perm[b:b + 256]
                loss = torch.nn.functional.cross_entropy(net(xt[i]), yt[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            xe = (torch.tensor(tx).view(-1, 3, 32, 32).float() / 255 - mean) / std
            acc = (net(xe).argmax(1) == torch.tensor(ty)).float().mean().item()
        os.makedirs(tdir, exist_ok=True)
        torch.save(net.state_dict(), tpath)
        print(f"teacher: {a.teacher_epochs} epochs on 20,000 images, test accuracy {100 * acc:.2f}%")
    for m in METRICS:
        write_yaml(os.path.join(work, f"{m}.yaml"), yaml_for(m, a, work), m)


def patch_reference(a):
    """The minimal patches listed in the module docstring."""
    import torchvision
    import ddranking.utils.model as model_mod
    import ddranking.utils.train_and_eval as tae
    import ddranking.metrics.hard_label as hl
    import ddranking.metrics.soft_label as sl
    import ddranking.metrics.aug_robust as ar
    from ddranking.utils import data as data_mod

    orig = model_mod.ConvNet
    model_mod.ConvNet = lambda **kw: orig(**dict(kw, net_width=a.width))
    torchvision.datasets.CIFAR10._check_integrity = lambda self: True
    torchvision.datasets.cifar.check_integrity = lambda *args, **kw: True
    state = {"run": 0}

    def seeded(seed=None):
        from ddranking.utils.misc import set_seed as real
        real(1000 + state["run"])
        state["run"] += 1

    for m in (hl, sl, ar):
        m.set_seed = seeded
    ident = {c: c for c in range(10)}

    def rdt(dataset_name, dataset, class_to_indices, ipc, eval_iter, saved_path=None, *rest):
        return data_mod.get_random_data_tensors(dataset_name, dataset, class_to_indices, ipc,
                                                ident, eval_iter, saved_path)

    sl.get_random_data_tensors = rdt
    ar.get_random_data_tensors = rdt
    for m in (hl, sl, ar):
        m.save_results = lambda *args, **kw: None
    tae.REAL_DATA_ACC_CACHE["CIFAR10-ConvNet-3"] = 100.0 * a.full_acc
    print("reference patched: width, seed, get_random_data_tensors(class_map), save_results, "
          "REAL_DATA_ACC_CACHE, torchvision md5 (see the module docstring)")
    return state


def record(ev, names):
    """Wraps an evaluator's helper methods to log each tuned accuracy in call order."""
    log = []
    for n in names:
        f = getattr(ev, n)

        def wrapped(*args, _f=f, **kw):
            acc, lr = _f(*args, **kw)
            log.append((float(acc), lr))
            return acc, lr

        setattr(ev, n, wrapped)
    return log


def lrs(hlr, ior, lam=0.5):
    al = lam * ior - (1 - lam) * hlr
    return (math.exp(al) - math.exp(-1)) / (math.e - math.exp(-1))


def run_reference(a, work):
    import torch
    torch.set_num_threads(a.threads)
    from ddranking.config import Config
    from ddranking.metrics import (LabelRobustScoreHard, LabelRobustScoreSoft,
                                   AugmentationRobustScore)
    import yaml
    state = patch_reference(a)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    syn = (torch.tensor(np.load(os.path.join(work, "syn_pixels.npy"))) - mean) / std
    out = {}
    if "seeds" in a.metrics:
        out["seeds"] = ref_seeds(a, work, syn)
        save(work, "ref_seeds.json", out["seeds"])
    for m in [m for m in a.metrics if m not in EXTRA]:
        with open(os.path.join(work, f"{m}.yaml")) as f:
            cfg = yaml.safe_load(f)
        cfg.pop("metric")
        t0 = time.time()
        runs = []
        if m == "lrs_hard":
            ev = LabelRobustScoreHard(config=Config(cfg))
            log = record(ev, ["_compute_hard_label_metrics_helper"])
            ev.compute_metrics(image_tensor=syn.clone())
            for i in range(a.runs):
                sh, rd = log[2 * i][0], log[2 * i + 1][0]
                runs.append({"syn_hard": sh, "rdm_recipe": rd})
        elif m == "lrs_soft":
            ev = LabelRobustScoreSoft(config=Config(cfg))
            log_h = record(ev, ["_compute_hard_label_metrics_helper"])
            log_s = record(ev, ["_compute_soft_label_metrics_helper"])
            ev.compute_metrics(image_tensor=syn.clone())
            for i in range(a.runs):
                runs.append({"syn_hard": log_h[i][0], "syn_recipe": log_s[2 * i][0],
                             "rdm_recipe": log_s[2 * i + 1][0]})
        else:
            ev = AugmentationRobustScore(config=Config(cfg))
            log_a = record(ev, ["_compute_with_aug_metrics_helper"])
            log_n = record(ev, ["_compute_without_aug_metrics_helper"])
            ev.compute_metrics(image_tensor=syn.clone())
            for i in range(a.runs):
                runs.append({"syn_aug": log_a[2 * i][0], "rdm_aug": log_a[2 * i + 1][0],
                             "syn_noaug": log_n[2 * i][0], "rdm_noaug": log_n[2 * i + 1][0]})
        for r in runs:
            derive(m, r, 100.0 * a.full_acc)
        out[m] = {"runs": runs, "seconds": time.time() - t0}
        print(f"reference {m}: {time.time() - t0:.0f} s")
        save(work, f"ref_{m}.json", out[m])
    if a.full_runs and a.full:
        cfg = yaml.safe_load(open(os.path.join(work, "lrs_hard.yaml")))
        cfg.pop("metric")
        cfg.update(num_epochs=a.full_epochs, eval_full_data=True)
        ev = LabelRobustScoreHard(config=Config(cfg))
        ev.test_interval = a.full_epochs  # one test at the end, as ddr-fast's --test-interval
        from ddranking.utils.misc import set_seed
        accs, t0 = [], time.time()
        for i in range(a.full_runs):
            set_seed(2000 + i)
            acc, _ = ev._compute_hard_label_metrics_helper(None, None, None, None, "real")
            accs.append({"full_hard": float(acc)})
        out["full"] = {"runs": accs, "seconds": time.time() - t0}
        print(f"reference full data: {time.time() - t0:.0f} s")
        save(work, "ref_full.json", out["full"])


def ref_seeds(a, work, syn):
    """LabelRobustScoreHard's own hard-label training of the synthetic set at --seeds-lr, run i
    seeded set_seed(3000 + i) right before it; with its DSA, then with no augmentation."""
    import yaml
    import ddranking.metrics.hard_label as hl
    from ddranking.config import Config
    from ddranking.metrics import LabelRobustScoreHard
    from ddranking.utils.misc import set_seed
    tests = []
    real_validate = hl.validate

    def logged(*args, **kw):
        acc = real_validate(*args, **kw)
        tests.append(float(acc))
        return acc

    hl.validate = logged
    cfg = yaml.safe_load(open(os.path.join(work, "lrs_hard.yaml")))
    cfg.pop("metric")
    ev = LabelRobustScoreHard(config=Config(cfg))
    labels = torch_labels(a.ipc)
    runs, t0 = [{} for _ in range(a.seeds_runs)], time.time()
    dsa = ev.aug_func
    for name, aug in [("dsa", dsa), ("noaug", None)]:
        ev.aug_func = aug
        for i in range(a.seeds_runs):
            set_seed(3000 + i)
            del tests[:]
            acc, _ = ev._compute_hard_label_metrics_helper(syn.clone(), None, labels, a.seeds_lr,
                                                           "syn")
            runs[i][name] = float(acc)
            if name == "dsa":
                runs[i]["dsa_last"] = tests[-1]
    hl.validate = real_validate
    print(f"reference seeds: {time.time() - t0:.0f} s")
    return {"runs": runs, "seconds": time.time() - t0}


def torch_labels(ipc):
    import torch
    return torch.arange(10).repeat_interleave(ipc)


def derive(m, r, full_pct):
    """HLR / IOR / LRS or ARS of one run in percent, by the paper's formula (fractions inside)."""
    if m.startswith("lrs"):
        rec = r.get("syn_recipe", r["syn_hard"])
        r["hlr"] = full_pct - r["syn_hard"]
        r["ior"] = rec - r["rdm_recipe"]
        r["lrs"] = 100.0 * lrs(r["hlr"] / 100.0, r["ior"] / 100.0)
    else:
        r["with_aug"] = r["syn_aug"] - r["rdm_aug"]
        r["without_aug"] = r["syn_noaug"] - r["rdm_noaug"]
        beta = 0.5 * r["with_aug"] / 100.0 + 0.5 * r["without_aug"] / 100.0
        r["ars"] = 100.0 * (math.exp(beta) - math.exp(-1)) / (math.e - math.exp(-1))


def save(work, name, obj):
    with open(os.path.join(work, name), "w") as f:
        json.dump(obj, f, indent=1)


def ddr(a, args, out_dir):
    cmd = [a.ddr, "eval", "--quiet", "--device", "cpu", "--no-cache", "--out", out_dir] + args
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"ddr-fast failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    with open(os.path.join(out_dir, "result.json")) as f:
        return json.load(f), time.time() - t0


def run_ddr(a, work):
    out = {}
    common = ["--data-dir", a.data_dir, "--syn", os.path.join(work, "syn.safetensors"),
              "--width", str(a.width), "--full-acc", str(a.full_acc), "--seed", "0",
              "--teacher-dir", os.path.join(work, "teachers")]
    if "seeds" in a.metrics:
        out["seeds"] = ddr_seeds(a, work, common)
        save(work, "ddr_seeds.json", out["seeds"])
    for m in [m for m in a.metrics if m not in EXTRA]:
        rec, secs = ddr(a, ["--config", os.path.join(work, f"{m}.yaml")] + common,
                        os.path.join(work, f"ddr_{m}"))
        runs = []
        for r in rec["runs"]:
            q = {k: 100.0 * v for k, v in r["acc"].items() if k != "full_hard"}
            derive(m, q, 100.0 * a.full_acc)
            for k in ["hlr", "ior", "lrs", "with_aug", "without_aug", "ars"]:
                if k in r:
                    q[k + "_ddr_fast"] = 100.0 * r[k]
            runs.append(q)
        out[m] = {"runs": runs, "seconds": secs}
        print(f"ddr-fast {m}: {secs:.0f} s")
        save(work, f"ddr_{m}.json", out[m])
    if a.full_runs and a.full:
        accs, t0 = [], time.time()
        for i in range(a.full_runs):
            rec, _ = ddr(a, ["--config", os.path.join(work, "lrs_hard.yaml"), "--data-dir",
                             a.data_dir, "--syn", os.path.join(work, "syn.safetensors"), "--width",
                             str(a.width), "--eval-full-data", "true", "--epochs",
                             str(a.full_epochs), "--test-interval", str(a.full_epochs),
                             "--num-eval", "1", "--lr-grid", "0.01", "--seed", str(i)],
                         os.path.join(work, f"ddr_full{i}"))
            accs.append({"full_hard": 100.0 * rec["runs"][0]["acc"]["full_hard"]})
        out["full"] = {"runs": accs, "seconds": time.time() - t0}
        print(f"ddr-fast full data: {time.time() - t0:.0f} s")
        save(work, "ddr_full.json", out["full"])


def ddr_seeds(a, work, common):
    """The same trainings in ddr-fast: metric acc with hard labels at one learning rate, run i
    seeded 1000 + i (seed 1000, runs 0..N-1), with DSA and with no augmentation."""
    runs, t0 = [{} for _ in range(a.seeds_runs)], time.time()
    for name, aug in [("dsa", "dsa"), ("noaug", "none")]:
        out_dir = os.path.join(work, f"ddr_seeds_{name}")
        args = ["--config", os.path.join(work, "lrs_hard.yaml")] + common
        args[args.index("--seed") + 1] = "1000"
        rec, _ = ddr(a, args + ["--metric", "acc", "--label-type", "hard", "--aug", aug,
                                "--lr-grid", str(a.seeds_lr), "--num-eval", str(a.seeds_runs)],
                     out_dir)
        # Each run's one training and its tests, in run order (its `what` names the run).
        journal = [json.loads(l) for l in open(os.path.join(out_dir, "journal.jsonl"))]
        by_run = {int(j["what"].rsplit(" ", 1)[1]): j for j in journal}
        for i, r in enumerate(rec["runs"]):
            runs[i][name] = 100.0 * r["acc"]["syn_recipe"]
            if name == "dsa":
                runs[i]["dsa_last"] = 100.0 * by_run[r["run"]]["tests"][-1]
    print(f"ddr-fast seeds: {time.time() - t0:.0f} s")
    return {"runs": runs, "seconds": time.time() - t0}


def stats(xs):
    xs = np.asarray(xs, dtype=np.float64)
    sd = xs.std(ddof=1) if len(xs) > 1 else 0.0
    return xs.mean(), sd, len(xs)


def compare(a, work):
    def load(side):
        out = {}
        for m in METRICS + ["full"] + EXTRA:
            path = os.path.join(work, f"{side}_{m}.json")
            if os.path.exists(path):
                out[m] = json.load(open(path))
        return out

    ref, mine = load("ref"), load("ddr")
    rows, bad = [], 0
    sections = [m for m in METRICS + ["full"] + EXTRA if m in ref and m in mine]
    for m in sections:
        qs = QUANTITIES.get(m, ["full_hard"])
        for q in qs:
            r = [x[q] for x in ref[m]["runs"]]
            d = [x[q] for x in mine[m]["runs"]]
            (mr, sr, nr), (md, sd, nd) = stats(r), stats(d)
            se = math.sqrt(sr ** 2 / nr + sd ** 2 / nd)
            tol = max(TOL_SE * se, TOL_FLOOR)
            ok = abs(mr - md) <= tol
            bad += not ok
            rows.append(f"| {m} | {q} | {mr:6.2f} ± {sr:4.2f} (n={nr}) | {md:6.2f} ± {sd:4.2f} (n={nd})"
                        f" | {md - mr:+6.2f} | {tol:5.2f} | {'ok' if ok else 'DIFFERS'} |")
    lines = [
        "| metric | quantity | reference mean ± sd | ddr-fast mean ± sd | Δ | tolerance | |",
        "|---|---|---|---|---|---|---|",
    ] + rows
    for m in sections:
        lines.append(f"\n{m}: reference {ref[m]['seconds']:.0f} s, ddr-fast {mine[m]['seconds']:.0f} s")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(work, "table.md"), "w") as f:
        f.write(text + "\n")
    print(f"\n{bad} quantit{'y' if bad == 1 else 'ies'} outside tolerance")
    return bad


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ddr", default="target/release/ddr-fast")
    p.add_argument("--data-dir", default="../shared/data/cifar10")
    p.add_argument("--work", default="/tmp/ddr-crosscheck")
    p.add_argument("--side", choices=["prepare", "ref", "ddr", "compare", "all"], default="all")
    p.add_argument("--metrics", nargs="*", default=METRICS, choices=METRICS + EXTRA)
    p.add_argument("--full", action="store_true",
                   help="also compare the full-data training (run with --metrics and no names "
                        "for it alone)")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--full-acc", type=float, default=0.45, help="fraction given to both sides")
    p.add_argument("--full-runs", type=int, default=3, help="full-data trainings per side (0: skip)")
    p.add_argument("--full-epochs", type=int, default=1)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds-runs", type=int, default=40, help="runs per side of `seeds`")
    p.add_argument("--seeds-lr", type=float, default=0.1, help="learning rate of `seeds`")
    p.add_argument("--test-images", type=int, default=10000,
                   help="test on the first N test images (both sides)")
    a = p.parse_args()
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    a.data_dir = os.path.abspath(a.data_dir)
    if a.side in ("prepare", "all", "ref", "ddr"):
        if not os.path.exists(os.path.join(work, "lrs_hard.yaml")) or a.side == "prepare":
            prepare(a, work)
    # Both sides read the prepared copy (its test split cut to --test-images).
    a.data_dir = os.path.join(work, "cifar10")
    if a.side in ("ref", "all"):
        run_reference(a, work)
    if a.side in ("ddr", "all"):
        run_ddr(a, work)
    if a.side in ("compare", "all"):
        sys.exit(1 if compare(a, work) else 0)


if __name__ == "__main__":
    main()
