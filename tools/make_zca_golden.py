#!/usr/bin/env python3
"""Golden file for ddr-fast's ZCA *pipeline* (not the fit alone): kornia's ZCAWhitening with
DD-Ranking's settings (eps 0.1, compute_inv True), fitted on a training split in raw [0, 1] pixels
(DD-Ranking's get_dataset uses ToTensor() without Normalize when use_zca is set) and applied to a
test split, also in raw pixels.

Writes tests/fixtures/zca_kornia_raw.safetensors (~40 KB):
  train_u8 [N, 3, 6, 6] uint8   the training split as bytes (pixels = byte / 255)
  test_u8  [M, 3, 6, 6] uint8
  test_out [M, 3, 6, 6] float32 kornia's whitened test split
and metadata {"eps": "0.1", "kornia": version, "torch": version}.

The images are smooth per-image colour ramps plus noise, so the pixel covariance has the strong
correlations of natural images (a fit on normalised data gives a visibly different result).

    python tools/make_zca_golden.py        # needs torch, kornia, safetensors (CPU wheels)
"""
import os

import kornia
import numpy as np
import torch
from safetensors.numpy import save_file

N, M, C, S = 200, 32, 3, 6
EPS = 0.1


def images(rng, n):
    y, x = np.mgrid[0:S, 0:S] / (S - 1)
    base = rng.uniform(0.1, 0.9, size=(n, C, 1, 1))
    gx = rng.uniform(-0.3, 0.3, size=(n, 1, 1, 1))
    gy = rng.uniform(-0.3, 0.3, size=(n, 1, 1, 1))
    tint = rng.uniform(-0.1, 0.1, size=(n, C, 1, 1))
    img = base + (gx + tint) * x + gy * y + rng.normal(0, 0.04, size=(n, C, S, S))
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def main():
    rng = np.random.default_rng(0)
    train, test = images(rng, N), images(rng, M)
    zca = kornia.enhance.ZCAWhitening(eps=EPS, compute_inv=True)
    zca.fit(torch.tensor(train, dtype=torch.float32) / 255.0)
    out = zca(torch.tensor(test, dtype=torch.float32) / 255.0).numpy().astype(np.float32)
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                        "zca_kornia_raw.safetensors")
    save_file({"train_u8": train, "test_u8": test, "test_out": out}, path,
              metadata={"eps": str(EPS), "kornia": kornia.__version__,
                        "torch": torch.__version__})
    print(f"wrote {os.path.normpath(path)}: |test_out| max {np.abs(out).max():.3f}")


if __name__ == "__main__":
    main()
