"""PyTorch counterpart of `ddr-fast bench`: ConvNet-3 (width 128, instance norm = GroupNorm(128, 128),
ReLU, 2x2 average pooling, linear head), one training step at batch 100 (SGD, momentum 0.9, weight
decay 5e-4, cross-entropy) and a test pass over 10,000 images in eval-mode forwards of 500, on the
CPU with 2 threads. Prints one JSON object with the same keys as `ddr-fast bench --json`, including
the images per CPU-second x threads figures (process CPU time, all threads).

    python tools/pytorch_bench.py [--threads 2] [--repeats 10] [--test-repeats 2]
"""

import argparse
import json
import os
import time

import torch
import torch.nn as nn


def convnet3(width=128, channels=3, classes=10, im_size=32):
    layers, c, hw = [], channels, im_size
    for _ in range(3):
        layers += [
            nn.Conv2d(c, width, 3, padding=1),
            nn.GroupNorm(width, width, affine=True),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, 2),
        ]
        c, hw = width, hw // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * hw * hw, classes))


def timed(fn, repeats):
    wall, cpu = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def mean_std(v):
    m = sum(v) / len(v)
    return m, (sum((x - m) ** 2 for x in v) / len(v)) ** 0.5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--test-images", type=int, default=10_000)
    ap.add_argument("--test-batch", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--test-repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = convnet3()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(a.batch, 3, 32, 32) * 2 - 1
    y = torch.randint(0, 10, (a.batch,))
    test_x = torch.rand(a.test_images, 3, 32, 32) * 2 - 1
    test_y = torch.randint(0, 10, (a.test_images,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        net.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    def test_pass():
        net.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, a.test_images, a.test_batch):
                out = net(test_x[s : s + a.test_batch])
                correct += (out.argmax(1) == test_y[s : s + a.test_batch]).sum().item()
        return correct

    for _ in range(a.warmup):
        step()
    load_before = os.getloadavg()[0]
    tw, tc = timed(step, a.repeats)
    timed(lambda: net(test_x[: a.test_batch]), 1)
    ew, ec = timed(test_pass, a.test_repeats)
    load_after = os.getloadavg()[0]
    (tm, ts), (em, es) = mean_std(tw), mean_std(ew)
    th = a.threads
    print(json.dumps({
        "train_step_img_per_s": a.batch / tm,
        "test_img_per_s": a.test_images / em,
        "device": f"cpu ({th} threads), PyTorch {torch.__version__}",
        "threads": th,
        "batch": a.batch,
        "test_images": a.test_images,
        "test_batch": a.test_batch,
        "n_train_steps": len(tw),
        "n_test_passes": len(ew),
        "train_step_ms_mean": tm * 1e3,
        "train_step_ms_std": ts * 1e3,
        "test_pass_s_mean": em,
        "test_pass_s_std": es,
        "train_step_img_per_s_cpu_time": a.batch / (mean_std(tc)[0] / th),
        "test_img_per_s_cpu_time": a.test_images / (mean_std(ec)[0] / th),
        "cpu_busy_fraction": (sum(tc) + sum(ec)) / ((sum(tw) + sum(ew)) * th),
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": load_after,
    }, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
