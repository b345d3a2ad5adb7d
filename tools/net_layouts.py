#!/usr/bin/env python3
"""Writes tests/fixtures/net_layouts.txt: the PyTorch state_dict (name, shape) of every network
ddranking's build_model reaches without torchvision/timm, for the `model::zoo` layout test.
Run by hand with the reference venv (never in CI):

    /tmp/fid/venv/bin/python tools/net_layouts.py > tests/fixtures/net_layouts.txt

Each block starts `model NAME CHANNELS IM_SIZE CLASSES`, then one `param|buffer NAME d0,d1,..`
line per tensor in state_dict order (num_batches_tracked left out: ddr-fast keeps one host
counter for every BN layer)."""
import torch
from ddranking.utils import networks as N

RESNETS = {18: (N.BasicBlock, [2, 2, 2, 2]), 34: (N.BasicBlock, [3, 4, 6, 3]), 50: (N.Bottleneck, [3, 4, 6, 3])}


def build(name, channel, res, classes):
    """What build_model builds for `name` (it passes channel=3; 1 channel as the modules take it)."""
    parts = name.split("-")
    depth = int(parts[1]) if len(parts) > 1 else 0
    norm = "batchnorm" if len(parts) > 2 and parts[2] == "BN" else "instancenorm"
    if name == "MLP":
        return N.MLP(channel=channel, num_classes=classes, res=res)
    if name == "LeNet":
        return N.LeNet(channel=channel, num_classes=classes, res=res)
    if name == "AlexNet":
        return N.AlexNet(channel=channel, num_classes=classes, res=res)
    if parts[0] == "VGG":
        return N.VGG(f"VGG{depth}", channel, classes, norm=norm, res=res)
    block, blocks = RESNETS[depth]
    return N.ResNet(block, blocks, channel=channel, num_classes=classes, norm=norm, res=res)


CASES = [
    ("MLP", 3, 32, 10), ("MLP", 3, 64, 200), ("MLP", 1, 28, 10),
    ("LeNet", 3, 32, 10), ("LeNet", 3, 64, 200),  # 1×28 px: the reference LeNet itself fails
    ("AlexNet", 3, 32, 10), ("AlexNet", 3, 64, 200),
    ("VGG-11", 3, 32, 10), ("VGG-11-BN", 3, 32, 100), ("VGG-13", 3, 32, 10), ("VGG-16-BN", 3, 64, 200),
    ("VGG-19", 3, 32, 10),
    ("ResNet-18", 3, 32, 10), ("ResNet-18-BN", 3, 32, 10), ("ResNet-18", 3, 64, 200),
    ("ResNet-34", 3, 32, 100), ("ResNet-50", 3, 32, 10), ("ResNet-50-BN", 3, 64, 200),
]

for name, ch, res, k in CASES:
    m = build(name, ch, res, k)
    # The reference's forward must accept the size, else the case is not a valid one.
    with torch.no_grad():
        out = m.eval()(torch.zeros(2, ch, res, res))
    assert tuple(out.shape) == (2, k), (name, out.shape)
    print(f"model {name} {ch} {res} {k}")
    params = dict(m.named_parameters())
    for key, t in m.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        kind = "param" if key in params else "buffer"
        print(f"{kind} {key} {','.join(str(d) for d in t.shape)}")
