#!/usr/bin/env python3
"""PyTorch side of benches/REPORT.md (issue 8, item 7): the workloads of `cargo bench --bench
cohort_sizes` (ConvNet-3: width 128, instance norm = GroupNorm(128, 128), ReLU, 2x2 average
pooling, linear head; CIFAR shape) at S students, run in PyTorch two ways:

  loop        DD-Ranking's way: S separate models, trained and tested one after another
              (one SGD step each at batch 100; a test pass of N images in forwards of 500).
  vmap        the strongest PyTorch: the S students' parameters stacked, one torch.func.vmap
              over functional_call for the forward, torch.func.grad for the backward, the SGD
              update on the stacked tensors; `+compile` wraps step and test in torch.compile
              (on a GPU mode="reduce-overhead", i.e. CUDA graphs); `+bf16` adds bf16 autocast
              (on a CPU with AMX PyTorch's fastest configuration).

Prints one JSON object per (impl, S, workload) line: mean/std seconds over n timed repeats after
warm-up, student-images per second, device, threads, torch version, load average.

    python tools/pytorch_baseline.py --sizes 1,8 --impls loop,vmap,vmap+compile,vmap+compile+bf16 \\
        --test-images 1000 --threads 2 >> benches/results/pytorch_baseline.jsonl
"""

import argparse
import copy
import json
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 100
TEST_CHUNK = 500


def convnet3(width=128, channels=3, classes=10, im_size=32):
    layers, c, hw = [], channels, im_size
    for _ in range(3):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True),
                   nn.ReLU(inplace=False), nn.AvgPool2d(2, 2)]
        c, hw = width, hw // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * hw * hw, classes))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats, dev):
    """(mean wall s, std wall s, n, mean process CPU s): the CPU time removes the time this
    process spent descheduled on a shared machine (wall = CPU / threads on idle cores)."""
    out, cpu = [], []
    for _ in range(repeats):
        sync(dev)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync(dev)
        out.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    m = sum(out) / len(out)
    return m, (sum((x - m) ** 2 for x in out) / len(out)) ** 0.5, len(out), sum(cpu) / len(cpu)


def loop_impl(s, dev, x, y, tx, ty):
    """S independent models, one after another (DD-Ranking's train_and_eval per student)."""
    nets = [convnet3().to(dev) for _ in range(s)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for n in nets]

    def step():
        for i, (n, o) in enumerate(zip(nets, opts)):
            n.train()
            o.zero_grad(set_to_none=True)
            F.cross_entropy(n(x[i]), y[i]).backward()
            o.step()

    def test():
        correct = 0
        with torch.no_grad():
            for n in nets:
                n.eval()
                for a in range(0, tx.shape[0], TEST_CHUNK):
                    correct += (n(tx[a:a + TEST_CHUNK]).argmax(1) == ty[a:a + TEST_CHUNK]).sum()
        return int(correct)

    return step, test


def vmap_impl(s, dev, x, y, tx, ty, compile_, bf16):
    """S students as one stacked ensemble: vmap(functional_call), grad, fused SGD on stacks."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    nets = [convnet3().to(dev) for _ in range(s)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    mom = {k: torch.zeros_like(v) for k, v in params.items()}
    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if bf16 else None

    def loss_one(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    grads_all = vmap(grad(loss_one), in_dims=(0, 0, 0, 0))

    def step_core(params, mom, x, y):
        if amp:
            with amp():
                g = grads_all(params, buffers, x, y)
        else:
            g = grads_all(params, buffers, x, y)
        with torch.no_grad():
            for k in params:
                gk = g[k].float() + 5e-4 * params[k]
                mom[k].mul_(0.9).add_(gk)
                params[k].sub_(0.01 * mom[k])

    def logits_all(params, xb):
        f = lambda p, b: functional_call(base, (p, b), (xb,))  # noqa: E731
        if amp:
            with amp():
                return vmap(f, in_dims=(0, 0))(params, buffers)
        return vmap(f, in_dims=(0, 0))(params, buffers)

    if compile_:
        mode = "reduce-overhead" if dev.type == "cuda" else "default"
        step_core = torch.compile(step_core, mode=mode)
        logits_all = torch.compile(logits_all, mode=mode)

    def step():
        step_core(params, mom, x, y)

    def test():
        correct = 0
        with torch.no_grad():
            for a in range(0, tx.shape[0], TEST_CHUNK):
                out = logits_all(params, tx[a:a + TEST_CHUNK])  # (S, chunk, 10)
                correct += (out.argmax(-1) == ty[a:a + TEST_CHUNK]).sum()
        return int(correct)

    return step, test


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,8,64,256")
    ap.add_argument("--impls", default="loop,vmap,vmap+compile,vmap+compile+bf16")
    ap.add_argument("--test-images", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--test-repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else f"cpu ({a.threads} threads, {platform.processor() or platform.machine()})")
    for s in [int(v) for v in a.sizes.split(",")]:
        x = torch.rand(s, BATCH, 3, 32, 32, device=dev) * 2 - 1
        y = torch.randint(0, 10, (s, BATCH), device=dev)
        tx = torch.rand(a.test_images, 3, 32, 32, device=dev) * 2 - 1
        ty = torch.randint(0, 10, (a.test_images,), device=dev)
        for impl in a.impls.split(","):
            rec = {"impl": impl, "students": s, "batch": BATCH, "test_images": a.test_images,
                   "device": name, "threads": a.threads, "torch": torch.__version__,
                   "python": platform.python_version(), "loadavg_1m_before": os.getloadavg()[0]}
            try:
                if impl == "loop":
                    step, test = loop_impl(s, dev, x, y, tx, ty)
                else:
                    parts = impl.split("+")
                    step, test = vmap_impl(s, dev, x, y, tx, ty, "compile" in parts, "bf16" in parts)
                t0 = time.perf_counter()
                for _ in range(a.warmup):
                    step()
                test()  # warm-up (and compilation) of the test path
                rec["warmup_s"] = time.perf_counter() - t0
                m, sd, n, c = timed(step, a.repeats, dev)
                rec.update(train_step_s_mean=m, train_step_s_std=sd, n_train_steps=n,
                           train_img_per_s=s * BATCH / m,
                           train_img_per_s_cpu_time=s * BATCH / (c / a.threads))
                m, sd, n, c = timed(test, a.test_repeats, dev)
                rec.update(test_pass_s_mean=m, test_pass_s_std=sd, n_test_passes=n,
                           test_img_per_s=s * a.test_images / m,
                           test_img_per_s_cpu_time=s * a.test_images / (c / a.threads))
            except Exception as e:  # a configuration PyTorch cannot run here is reported, not hidden
                rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            rec["loadavg_1m_after"] = os.getloadavg()[0]
            print(json.dumps(rec, sort_keys=True), flush=True)
            sys.stderr.write(f"{impl} S={s}: {rec.get('train_img_per_s', rec.get('error'))}\n")


if __name__ == "__main__":
    main()
