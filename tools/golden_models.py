#!/usr/bin/env python3
"""Golden files for every DD-Ranking student network (issue #9 item 4). Run by hand, never in CI:

    /tmp/fid/venv/bin/python tools/golden_models.py [MODEL ...]   # torch (CPU), ddranking, safetensors, numpy

For each model name it builds `ddranking.utils.model.build_model(name, num_classes=10,
im_size=(32, 32), device='cpu')` (build_model always makes 3-channel networks, so there is no
1-channel/28-px case), sets every parameter, BN buffer and the input batch from the FORMULA below
(so neither side stores ResNet-sized tensors and both compute them bit-exactly), and writes
tests/fixtures/golden_models/<model>.safetensors.

THE FORMULA (also in every file's metadata key `formula`). All arithmetic is on unsigned 64-bit
integers modulo 2^64, then one exact float64 expression rounded once to float32:
    z  = t·0x9E3779B97F4A7C15 + i·0xD1B54A32D192ED03 + 0x632BE59BD9B4E019
    z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31
    u  = (2·(z >> 40) − (2^24 − 1)) / 2^24          an odd dyadic in (−1, 1), exact in float32
    value(t, i) = float32(offset + u · 2^−e)          (offset, e) per tensor
t is the tensor's id, i the flat (row-major) element index. No libm call anywhere.
- parameters: t = position in named_parameters() order; conv/linear weight and bias: offset 0,
  e = (bit_length(fan_in) − 1) // 2 with fan_in = weight.numel() / weight.shape[0] (so
  |w| < 2^−e ≈ 1/√fan_in, PyTorch's default init range); norm weight: offset 1, e = 3; norm bias:
  offset 0, e = 3. BN running_mean: t = 1000 + k (k-th running tensor), offset 0, e = 3;
  running_var: t = 1000 + k, offset 0.75, e = 2.
- input [B, 3, 32, 32]: t = 10000, offset 0, e = 0 (or the first of INPUT_IDS whose max-pool
  windows all clear MIN_POOL_GAP, below; the id used is in `input_formula`).
  teacher_logits [B, K]: t = 10001, e = −1.
  labels[b] = (z(10002, b) >> 11) mod K, z the hashed word above.
- sampled indices of a large tensor with id t: (z(20000 + t, j) >> 11) mod numel for j < 32, plus
  the argmax of |grad_ce| of that tensor (indices of the whole tensor, row-major).

Tensors (README.md in the fixture folder gives the full schema). A tensor of ≤ WHOLE_LIMIT elements
is stored whole under `<prefix>.<name>`; a larger one as `<prefix>.<name>@moments` (F64 [3]: mean,
population std, max|x| in float64 of the float32 tensor) and `<prefix>.<name>@sample` (F32 at the
indices `index.<name>`, I64). Prefixes: `param` (the formula's values, so a test can confirm it
computes the same), `grad_ce`, `sgd1.param`, `sgd2.param`, `adam1.param`, `adam2.param`,
`adam2.grad_ce` (CE gradients at adam1.param: what Adam's step 2 used), `train1.buffer` (BN running
statistics after one train forward). Whole: `labels`, `teacher_logits`, `logits`, `logits_eval`,
`loss.ce`, `loss.kl`, `dlogits.ce`, `dlogits.kl`.
"""
import json
import os
import sys

import ddranking
import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from ddranking.utils.model import build_model
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "golden_models")
MODELS = ["ConvNet-3", "ConvNet-3-BN", "MLP", "LeNet", "AlexNet", "VGG-11", "VGG-11-BN",
          "ResNet-18", "ResNet-18-BN"]
BATCH, CLASSES, IM, CHANNELS = 4, 10, 32, 3
WHOLE_LIMIT = 64
N_SAMPLE = 32
T_KL = 1.2
LOSSES = {
    "ce": {"fn": "F.cross_entropy"},
    "kl": {"fn": "KLDivergenceLoss", "temperature": T_KL, "scale_loss": False},
}
OPTIMIZERS = {
    "sgd": {"cls": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "dampening": 0.0,
            "nesterov": False},
    "adam": {"cls": "Adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 5e-4},
}
FORMULA = ("z = t*0x9E3779B97F4A7C15 + i*0xD1B54A32D192ED03 + 0x632BE59BD9B4E019 (mod 2^64); "
           "z ^= z>>30; z *= 0xBF58476D1CE4E5B9; z ^= z>>27; z *= 0x94D049BB133111EB; z ^= z>>31; "
           "u = (2*(z>>40) - (2^24-1)) / 2^24; value = float32(offset + u*2^-e) (exact in float64, "
           "rounded once); labels[b] = (z(10002,b)>>11) mod K; sample j of tensor t: "
           "(z(20000+t,j)>>11) mod numel, j < 32, then argmax|grad_ce|")

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)

# A max-pool window whose two largest inputs are nearly equal routes its gradient by float32
# rounding: any implementation that sums in another order (ddr-fast's CPU or CUDA path, PyTorch on
# a GPU) may pick the other input, and the gradients of every layer below it move by percents (the
# first VGG-11 file had such a window: the CUDA path, within 2e-6 of the CPU op by op, picked the
# other input and features.0's weight gradient moved 4 %). Such a file tests rounding luck, not the
# network, so the input is re-drawn (next tensor id in INPUT_IDS) until, in every forward whose
# gradients the file stores, every window's top-two gap relative to the largest input of that
# pooling layer is at least MIN_POOL_GAP: the 2e-6 worst op-level CPU-vs-CUDA difference
# measured on VGG-11 (tests/cuda_layer_lists.rs). Larger margins are rare: with ~10^5 windows per
# layer the smallest gap of a random input is typically 1e-6 (500 VGG-11 inputs: best 1.4e-5).
# Windows whose maximum is 0 (all inputs cut by ReLU) are exact ties with zero gradient: skipped.
MIN_POOL_GAP = 2e-6
INPUT_IDS = [10000] + list(range(10100, 10600))


def hashed(t, n):
    """z(t, i) for i < n as uint64 (numpy wraps modulo 2^64)."""
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        z = (np.uint64(t) * np.uint64(0x9E3779B97F4A7C15) + i * np.uint64(0xD1B54A32D192ED03)
             + np.uint64(0x632BE59BD9B4E019))
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def formula(t, n, e, offset):
    u = (2.0 * (hashed(t, n) >> np.uint64(40)).astype(np.float64) - (2**24 - 1)) / 2**24
    return (offset + u * 2.0**-e).astype(np.float32)


def fan_exponent(weight):
    fan_in = weight.numel() // weight.shape[0]
    return (int(fan_in).bit_length() - 1) // 2


def param_formulas(model):
    """[name, t, e, offset] per parameter and per BN running tensor, in state_dict order."""
    owner = {}
    for mname, m in model.named_modules():
        for pname, _ in m.named_parameters(recurse=False):
            owner[f"{mname}.{pname}" if mname else pname] = m
    params = []
    for t, (name, p) in enumerate(model.named_parameters()):
        m = owner[name]
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            params.append([name, t, fan_exponent(m.weight), 0.0])
        elif isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)):
            params.append([name, t, 3, 1.0 if name.endswith("weight") else 0.0])
        else:
            raise SystemExit(f"no formula for parameter {name} of {type(m).__name__}")
    buffers = []
    k = 0
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            buffers.append([name, 1000 + k, 3, 0.0])
        elif name.endswith("running_var"):
            buffers.append([name, 1000 + k, 2, 0.75])
        else:
            continue
        k += 1
    return params, buffers


def set_from_formula(model, params, buffers):
    sd = dict(model.named_parameters())
    sd.update(dict(model.named_buffers()))
    with torch.no_grad():
        for name, t, e, off in params + buffers:
            x = sd[name]
            x.copy_(torch.from_numpy(formula(t, x.numel(), e, off)).view_as(x))


def layer_facts(model):
    """What the tolerance derivation in tests/golden_models.rs needs: the longest chain of
    conv/linear layers from input to logits, and the longest float32 reductions of the forward
    (conv/linear fan-in, norm statistics) and of a weight gradient (batch × output pixels)."""
    fan, norm_red, grad_red = 1, 1, 1
    shapes = {}
    hooks = []

    def hook(m, inp, out):
        shapes[m] = (tuple(inp[0].shape), tuple(out.shape))

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm,
                          torch.nn.BatchNorm2d)):
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()
        model(torch.zeros(BATCH, CHANNELS, IM, IM))
    for h in hooks:
        h.remove()
    for m, (i, o) in shapes.items():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            fan = max(fan, m.weight.numel() // m.weight.shape[0])
            pix = o[2] * o[3] if len(o) == 4 else 1
            grad_red = max(grad_red, o[0] * pix)
        elif isinstance(m, torch.nn.BatchNorm2d):
            norm_red = max(norm_red, o[0] * o[2] * o[3])
        else:
            norm_red = max(norm_red, o[2] * o[3] * (o[1] // m.num_groups))
    # Weight layers on the longest input→logits path: ResNet's shortcut convs are side branches.
    chain = sum(1 for n, m in model.named_modules()
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and "shortcut" not in n)
    return {"weight_layers_on_path": chain, "max_fan_in": fan, "max_norm_reduction": norm_red,
            "max_grad_reduction": grad_red}


class PoolMargin:
    """Smallest relative top-two gap over every max-pool window in the forwards made while active."""

    def __init__(self, model):
        self.model, self.hooks, self.min_gap = model, [], float("inf")

    def __enter__(self):
        for m in self.model.modules():
            if isinstance(m, torch.nn.MaxPool2d):
                self.hooks.append(m.register_forward_hook(self.hook))
        return self

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()

    def hook(self, m, inp, out):
        x = inp[0].detach().double()
        k, st, pad = (m.kernel_size, m.stride, m.padding)
        b, c, h, w = x.shape
        x = F.pad(x.reshape(b * c, 1, h, w), (pad, pad, pad, pad), value=float("-inf"))
        win = F.unfold(x, kernel_size=k, stride=st)  # (B·C, k·k, windows)
        top = win.topk(2, dim=1).values
        live = top[:, 0] > 0
        if live.any():
            scale = float(inp[0].detach().abs().max())
            gap = float((top[:, 0] - top[:, 1])[live].min()) / scale
            self.min_gap = min(self.min_gap, gap)


def kl_loss(z, t):
    """ddranking KLDivergenceLoss(temperature=T_KL, scale_loss=False)."""
    from ddranking.loss import KLDivergenceLoss
    return KLDivergenceLoss(temperature=T_KL, scale_loss=False)(z, t)


def run(model, x, y, t):
    """Train forward, losses, dlogits, CE gradients."""
    model.train()
    z = model(x)
    z.retain_grad()
    ce = F.cross_entropy(z, y)
    ce.backward(retain_graph=True)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    dce = z.grad.detach().clone()
    z.grad = None
    model.zero_grad()
    kl = kl_loss(z, t)
    dkl = torch.autograd.grad(kl, z)[0]
    return z.detach(), ce.detach(), kl.detach(), dce, dkl, grads


def ce_grads_at(model, params, buffers0, x, y):
    """CE gradients at the given parameters, train mode, buffers restored afterwards."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(params[n])
    saved = {n: b.clone() for n, b in model.named_buffers()}
    model.zero_grad()
    F.cross_entropy(model.train()(x), y).backward()
    g = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(saved[n])
    return g


def two_steps(model, p0, x, y, key):
    cfg = OPTIMIZERS[key]
    params = {n: p.clone() for n, p in p0.items()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(params[n])
    if cfg["cls"] == "SGD":
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                              weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]),
                               eps=cfg["eps"], weight_decay=cfg["weight_decay"])
    out, used = [], []
    saved = {n: b.clone() for n, b in model.named_buffers()}
    for _ in range(2):
        cur = {n: p.detach().clone() for n, p in model.named_parameters()}
        g = ce_grads_at(model, cur, saved, x, y)
        used.append(g)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.grad = g[n].clone()
        opt.step()
        out.append({n: p.detach().clone() for n, p in model.named_parameters()})
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(saved[n])
    return out, used


class Writer:
    def __init__(self):
        self.t = {}

    def whole(self, key, a):
        self.t[key] = np.ascontiguousarray(a)

    def tensor(self, prefix, name, a, index):
        a = a.detach().numpy().astype(np.float32) if torch.is_tensor(a) else a
        if a.size <= WHOLE_LIMIT:
            self.t[f"{prefix}.{name}"] = np.ascontiguousarray(a)
        else:
            f = a.astype(np.float64).ravel()
            self.t[f"{prefix}.{name}@moments"] = np.array(
                [f.mean(), f.std(), np.abs(f).max()], dtype=np.float64)
            self.t[f"{prefix}.{name}@sample"] = a.ravel()[index]


def gap(a, b):
    return float((a.double() - b.double()).abs().max())


def make(name):
    for input_id in INPUT_IDS:
        written = make_with_input(name, input_id)
        if written:
            return
    raise SystemExit(f"{name}: no input id in INPUT_IDS clears MIN_POOL_GAP = {MIN_POOL_GAP}")


def make_with_input(name, input_id):
    """Writes the file and returns True, or returns False when a max-pool window is near-tied."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=CLASSES, im_size=(IM, IM), device="cpu").float()
    pf, bf = param_formulas(model)
    set_from_formula(model, pf, bf)
    facts = layer_facts(model)
    set_from_formula(model, pf, bf)  # layer_facts ran a forward; restore exactly
    n_in = BATCH * CHANNELS * IM * IM
    x = torch.from_numpy(formula(input_id, n_in, 0, 0.0)).view(BATCH, CHANNELS, IM, IM)
    y = torch.from_numpy((hashed(10002, BATCH) >> np.uint64(11)).astype(np.uint64)
                         % np.uint64(CLASSES)).long()
    t = torch.from_numpy(formula(10001, BATCH * CLASSES, -1, 0.0)).view(BATCH, CLASSES)

    with PoolMargin(model) as screen, torch.no_grad():  # one cheap forward first
        model.train()
        model(x)
    set_from_formula(model, pf, bf)  # the forward moved the BN buffers; restore exactly
    if screen.min_gap < MIN_POOL_GAP:
        return False
    p0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    b0 = {n: b.detach().clone() for n, b in model.named_buffers()}
    # The margin counts the forwards whose gradients the file stores directly: grad_ce at param.*
    # and adam2.grad_ce at adam1.param (a flip in SGD's second gradient moves sgd2.param by lr times
    # a few percent of one gradient, far inside its tolerance; forward values never depend on which
    # of two tied inputs is the maximum).
    with PoolMargin(model) as margin:
        z, ce, kl, dce, dkl, grads = run(model, x, y, t)
    train1 = {n: b.detach().clone() for n, b in model.named_buffers()}
    model.eval()
    with torch.no_grad():
        z_eval = model(x)
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(b0[n])
    sgd, _ = two_steps(model, p0, x, y, "sgd")
    with PoolMargin(model) as margin_adam:
        adam, adam_used = two_steps(model, p0, x, y, "adam")
    margin.min_gap = min(margin.min_gap, margin_adam.min_gap)
    if margin.min_gap < MIN_POOL_GAP:
        print(f"{name}: input id {input_id}: a max-pool window is near-tied "
              f"(relative top-two gap {margin.min_gap:.2e} < {MIN_POOL_GAP:.0e}); next id",
              flush=True)
        return False

    # PyTorch's own float32-vs-float64 gap (hints only; the test derives its bounds).
    m64 = build_model(name, num_classes=CLASSES, im_size=(IM, IM), device="cpu").double()
    with torch.no_grad():
        for n, p in m64.named_parameters():
            p.copy_(p0[n].double())
        for n, b in m64.named_buffers():
            b.copy_(b0[n])
    z64, ce64, kl64, _, _, g64 = run(m64, x.double(), y, t.double())
    m64.eval()
    with torch.no_grad():
        z64_eval = m64(x.double())
    hints = {
        "logits": gap(z, z64), "logits_eval": gap(z_eval, z64_eval),
        "loss.ce": gap(ce, ce64), "loss.kl": gap(kl, kl64),
        "grad_ce": max(gap(grads[n], g64[n]) for n in grads),
        "grad_ce_max_abs": max(float(g.abs().max()) for g in grads.values()),
    }

    w = Writer()
    index = {}
    for n, tid, _, _ in pf + bf:
        numel = (p0[n] if n in p0 else b0[n]).numel()
        if numel > WHOLE_LIMIT:
            idx = (hashed(20000 + tid, N_SAMPLE) >> np.uint64(11)) % np.uint64(numel)
            idx = idx.astype(np.int64)
            if n in grads:
                idx = np.append(idx, int(grads[n].abs().flatten().argmax()))
            index[n] = idx
            w.whole(f"index.{n}", idx)
    for n, *_ in pf:
        w.tensor("param", n, p0[n], index.get(n))
        w.tensor("grad_ce", n, grads[n], index.get(n))
        w.tensor("sgd1.param", n, sgd[0][n], index.get(n))
        w.tensor("sgd2.param", n, sgd[1][n], index.get(n))
        w.tensor("adam1.param", n, adam[0][n], index.get(n))
        w.tensor("adam2.param", n, adam[1][n], index.get(n))
        w.tensor("adam2.grad_ce", n, adam_used[1][n], index.get(n))
    for n, *_ in bf:
        w.tensor("buffer", n, b0[n], index.get(n))
        w.tensor("train1.buffer", n, train1[n], index.get(n))
    for key, v in [("labels", y.numpy().astype(np.int64)), ("teacher_logits", t.numpy()),
                   ("logits", z.numpy()), ("logits_eval", z_eval.numpy()),
                   ("loss.ce", ce.numpy().reshape(1)), ("loss.kl", kl.numpy().reshape(1)),
                   ("dlogits.ce", dce.numpy()), ("dlogits.kl", dkl.numpy())]:
        w.whole(key, v)
    # Conv biases in front of a norm have a zero true gradient (README of ../shared/golden §4.3).
    zero = [n for n in grads if n.endswith(".bias") and n.startswith("features.")
            and float(grads[n].abs().max()) < 1e-5 and "Conv" in type(
                dict(model.named_modules())[n.rsplit(".", 1)[0]]).__name__]
    meta = {
        "golden_kind": "model_formula", "schema_version": "1", "model": name,
        "builder": "ddranking.utils.model.build_model(model, num_classes, im_size, device='cpu')",
        "channels": str(CHANNELS), "im": str(IM), "classes": str(CLASSES), "batch": str(BATCH),
        "formula": FORMULA,
        "param_formula": json.dumps(pf), "buffer_formula": json.dumps(bf),
        "input_formula": json.dumps({"input": [input_id, 0, 0.0],
                                     "teacher_logits": [10001, -1, 0.0], "labels": 10002}),
        "whole_limit": str(WHOLE_LIMIT), "n_sample": str(N_SAMPLE),
        "zero_grad_params": json.dumps(zero),
        "losses": json.dumps(LOSSES), "optimizers": json.dumps(OPTIMIZERS),
        "optimizer_protocol": "both optimizers start from param.*; each step uses the CE gradients "
                              "at the current parameters on the same batch in train mode, with the "
                              "BN buffers reset to buffer.* before each gradient",
        "bn_buffers": "train1.buffer = after the one train forward of input from buffer.*; "
                      "logits_eval uses train1.buffer",
        "layer_facts": json.dumps(facts), "tolerance_hints": json.dumps(hints),
        "version_torch": torch.__version__, "version_ddranking": getattr(
            ddranking, "__version__", "0.2.0"), "version_numpy": np.__version__,
        "threads": str(torch.get_num_threads()),
    }
    if margin.min_gap != float("inf"):
        meta["min_pool_gap"] = json.dumps({"required": MIN_POOL_GAP, "measured": margin.min_gap})
    folder = OUT
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name.lower().replace("-", "_") + ".safetensors")
    save_file(w.t, path, metadata=meta)
    print(f"{name}: {os.path.getsize(path):,} bytes, {len(w.t)} tensors, P = "
          f"{sum(p.numel() for p in p0.values()):,}, facts {facts}, hints "
          f"logits {hints['logits']:.2e} grad {hints['grad_ce']:.2e}, input id {input_id}, "
          f"max-pool top-two gap {margin.min_gap:.2e}", flush=True)
    return True


def main():
    torch.set_num_threads(2)
    names = sys.argv[1:] or MODELS
    for name in names:
        make(name)


if __name__ == "__main__":
    main()
