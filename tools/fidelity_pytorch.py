"""PyTorch reference side of ddr-fast's fidelity check (issue 4, item 7).

Trains DD-Ranking's ConvNet-3 (instance norm = GroupNorm(C, C), ReLU, 2x2 average pooling, linear
head; PyTorch default init) on class-balanced random CIFAR-10 subsets written by
`ddr-fast select --method random --seed S --run R` with the same shortened hard-label recipe that
`ddr-fast eval --metric acc` runs (SGD momentum 0.9, weight decay 5e-4, StepLR(step = epochs/2,
gamma 0.1) stepped per epoch, cross-entropy, batches of `--batch` with the last partial batch kept,
no augmentation), tests every `--test-interval` epochs and after the last one, and prints the best
test accuracy (fraction) per subset as one JSON object.

    python tools/fidelity_pytorch.py --cifar ../shared/data/cifar10 subset_*.safetensors \
        [--width 128] [--epochs 50] [--lr 0.01] [--batch 256] [--test-interval 10] [--threads 2]

The subset files hold [0,1] pixels (metadata pixel_space = true) in class-major order; they are read
with a few lines of struct/json (no `safetensors` package needed).
"""

import argparse
import json
import os
import struct

import torch
import torch.nn as nn

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)


def read_safetensors_images(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.get("__metadata__", {})
    t = header["images"]
    assert t["dtype"] == "F32", f"{path}: images must be F32, found {t['dtype']}"
    lo, hi = t["data_offsets"]
    x = torch.frombuffer(bytearray(raw[8 + n + lo : 8 + n + hi]), dtype=torch.float32).reshape(t["shape"])
    return x.clone(), meta.get("pixel_space") == "true"


def read_cifar10_test(folder):
    rec = 3073
    with open(os.path.join(folder, "test_batch.bin"), "rb") as f:
        raw = f.read()
    n = len(raw) // rec
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(n, rec)
    labels = data[:, 0].long()
    images = data[:, 1:].float().div(255.0).reshape(n, 3, 32, 32)
    return images, labels


def normalise(x):
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - m) / s


def convnet3(width, channels=3, classes=10, im_size=32):
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


def evaluate(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    model.train()
    return correct / len(y)


def train_one(x, y, test_x, test_y, args, seed):
    torch.manual_seed(seed)
    model = convnet3(args.width)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, args.epochs // 2), gamma=0.1)
    loss_fn = nn.CrossEntropyLoss()
    best = 0.0
    g = torch.Generator().manual_seed(seed)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), args.batch):
            idx = perm[i : i + args.batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
        if (epoch + 1) % args.test_interval == 0 or epoch + 1 == args.epochs:
            best = max(best, evaluate(model, test_x, test_y))
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("subsets", nargs="+")
    p.add_argument("--cifar", required=True)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--test-interval", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="init/shuffle seed of subset k is seed + k")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    test_x, test_y = read_cifar10_test(args.cifar)
    test_x = normalise(test_x)
    accs = {}
    for k, path in enumerate(args.subsets):
        x, pixel = read_safetensors_images(path)
        if pixel:
            x = normalise(x)
        ipc = len(x) // 10
        y = torch.arange(10).repeat_interleave(ipc)
        accs[os.path.basename(path)] = train_one(x, y, test_x, test_y, args, seed=args.seed + k)
    vals = torch.tensor(list(accs.values()), dtype=torch.float64)
    print(json.dumps({"accs": accs, "mean": vals.mean().item(), "std": vals.std(unbiased=False).item(), "args": vars(args)}))


if __name__ == "__main__":
    main()
