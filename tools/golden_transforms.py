#!/usr/bin/env python3
"""Golden file for ddr-fast's torchvision-style train transforms (src/aug/tv*.rs; issue #9 item 5).
Run by hand, never in CI:

    /tmp/fid/venv/bin/python tools/golden_transforms.py    # torch, torchvision, safetensors

Writes tests/fixtures/torchvision_transforms.safetensors (~300 KB). Every output comes from the real
torchvision code (tensor path, float32, antialias=True — torchvision's default since 0.17):
  input             [N,3,32,32] F32   N(0,1) images
  rrc.box           [N,4] I64         fixed crop boxes (top i, left j, height h, width w)
  rrc.out32, rrc.out24, rrc.out48
                    [N,3,S,S] F32     F.resized_crop(img, i, j, h, w, [S, S], BILINEAR,
                                      antialias=True): up-, down- and mixed scaling
  flip.out          [N,3,32,32] F32   F.hflip
  padcrop.offset    [N,2] I64         (top, left) in the 40×40 padded image
  padcrop.out       [N,3,32,32] F32   F.crop(F.pad(img, 4), top, left, 32, 32) (RandomCrop(32, 4))
  norm.mean, norm.std [3] F32; norm.out [N,3,32,32] F32   F.normalize
  sampler.<case>.area_frac, .aspect  [10] F64  the 10 tries' draws torchvision made (replayed from
                                      its seed: torch.empty(1).uniform_(s0, s1), exp of
                                      uniform_(log r0, log r1), in that order)
  sampler.<case>.box [4] I64          what RandomResizedCrop.get_params returned (i, j, h, w)
  sampler.<case>.hw  [2] I64          the image (H, W) of the case
  stats.hist        [33,33] F64       frequency of (h, w) over STATS_N torchvision draws on 32×32
                                      with the defaults (scale (0.08, 1), ratio (3/4, 4/3))
metadata: sampler case list with their scale/ratio, STATS_N, stats_tv_noise (the total-variation
distance between two independent torchvision runs of STATS_N draws: the test's yardstick).
"""
import json
import math
import os

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from safetensors.numpy import save_file
from torchvision.transforms import InterpolationMode, RandomResizedCrop

N = 3
STATS_N = 100_000
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "torchvision_transforms.safetensors")
# (name, H, W, scale, ratio, seed): defaults, and cases that force the centre-crop fallback
# through each of its three branches.
CASES = [
    ("default_a", 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), 1),
    ("default_b", 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), 2),
    ("default_c", 64, 48, (0.08, 1.0), (3 / 4, 4 / 3), 3),
    ("fallback_wide", 32, 32, (0.95, 1.0), (3.0, 4.0), 4),
    ("fallback_tall", 32, 32, (0.95, 1.0), (0.2, 0.25), 5),
    ("fallback_whole", 20, 30, (1.2, 1.5), (1.0, 2.0), 6),
]


def replay(seed, scale, ratio):
    """The draws get_params makes with this seed, by consuming the generator the same way."""
    torch.manual_seed(seed)
    log_ratio = torch.log(torch.tensor(ratio))
    area, aspect = [], []
    for _ in range(10):
        area.append(torch.empty(1).uniform_(scale[0], scale[1]).item())
        aspect.append(torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item())
    return area, aspect


def hist(n, seed):
    torch.manual_seed(seed)
    img = torch.zeros(1, 32, 32)
    h = np.zeros((33, 33))
    for _ in range(n):
        _, _, bh, bw = RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        h[bh, bw] += 1
    return h / n


def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, 32, 32, generator=g)
    boxes = torch.tensor([[3, 5, 17, 11], [10, 2, 9, 25], [1, 0, 30, 31]])
    t = {"input": x.numpy(), "rrc.box": boxes.numpy().astype(np.int64)}
    for s in (32, 24, 48):
        t[f"rrc.out{s}"] = torch.stack([
            F.resized_crop(x[n], *boxes[n].tolist(), [s, s], InterpolationMode.BILINEAR,
                           antialias=True) for n in range(N)]).numpy()
    t["flip.out"] = F.hflip(x).numpy()
    off = torch.tensor([[0, 8], [8, 0], [1, 7]])
    t["padcrop.offset"] = off.numpy().astype(np.int64)
    t["padcrop.out"] = torch.stack([
        F.crop(F.pad(x[n], [4]), int(off[n, 0]), int(off[n, 1]), 32, 32) for n in range(N)]).numpy()
    mean, std = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
    t["norm.mean"] = np.array(mean, dtype=np.float32)
    t["norm.std"] = np.array(std, dtype=np.float32)
    t["norm.out"] = F.normalize(x.clone(), mean, std).numpy()
    cases = []
    for name, hh, ww, scale, ratio, seed in CASES:
        torch.manual_seed(seed)
        box = RandomResizedCrop.get_params(torch.zeros(1, hh, ww), list(scale), list(ratio))
        area, aspect = replay(seed, scale, ratio)
        t[f"sampler.{name}.area_frac"] = np.array(area, dtype=np.float64)
        t[f"sampler.{name}.aspect"] = np.array(aspect, dtype=np.float64)
        t[f"sampler.{name}.box"] = np.array(box, dtype=np.int64)
        t[f"sampler.{name}.hw"] = np.array([hh, ww], dtype=np.int64)
        cases.append({"name": name, "scale": list(scale), "ratio": list(ratio)})
        print(name, box)
    h1, h2 = hist(STATS_N, 100), hist(STATS_N, 101)
    t["stats.hist"] = h1
    noise = 0.5 * float(np.abs(h1 - h2).sum())
    meta = {"cases": json.dumps(cases), "stats_n": str(STATS_N), "stats_tv_noise": repr(noise),
            "stats_scale": "[0.08, 1.0]", "stats_ratio": "[0.75, 1.3333333333333333]",
            "antialias": "True", "interpolation": "bilinear", "padding": "4 (constant 0)",
            "version_torch": torch.__version__, "version_torchvision": torchvision.__version__}
    save_file(t, OUT, metadata=meta)
    print(f"wrote {os.path.normpath(OUT)}: {os.path.getsize(OUT):,} bytes, tv noise {noise:.4f}")


if __name__ == "__main__":
    main()
