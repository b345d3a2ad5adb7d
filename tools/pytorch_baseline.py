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
              (on a CPU with AMX PyTorch's fastest configuration; without AMX the bf16 matmuls
              and convolutions run on AVX-512/AVX2 conversions and are not expected to win);
              `+graphs` (GPU only) is torch.compile's mode="reduce-overhead", i.e. CUDA graphs.

Prints one JSON object per (impl, S) line: mean/std seconds over n timed repeats after warm-up,
student-images per second (wall and per CPU-second), device, threads, torch version, load average,
the process's peak RSS so far. tools/bench_cohorts.py runs it one (impl, S) per process, so that
peak is the configuration's own.

    python tools/pytorch_baseline.py --sizes 1,8 --impls loop,vmap,vmap+compile,vmap+compile+bf16 \\
        --test-images 1000 --threads 2 >> benches/results/pytorch_baseline.jsonl

torch.compile on this machine: inductor writes generated C++ to TORCHINDUCTOR_CACHE_DIR (set here
to /tmp/ddr-torchinductor-$USER unless already set, so a read-only venv or home is no obstacle)
and compiles it with the host's g++ in TORCHINDUCTOR_COMPILE_THREADS worker processes (set to
--threads: more workers than cores only queue on a 2-core machine).
"""

import argparse
import copy
import json
import os
import platform
import resource
import sys
import time

BATCH = 100
TEST_CHUNK = 500
# Student-rows per test forward (as benches/cohort_sizes.rs): the chunk shrinks as S grows, so
# a test forward holds at most this many rows' activations (S = 64: 200 images per student).
TEST_ROWS_PER_FORWARD = 12_800
IMPLS = ["loop", "vmap", "vmap+compile", "vmap+compile+bf16", "vmap+compile+graphs"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,8,64,256")
    ap.add_argument("--impls", default="loop,vmap,vmap+compile,vmap+compile+bf16",
                    help="comma list of " + ", ".join(IMPLS) + " (+graphs needs --device cuda)")
    ap.add_argument("--test-images", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=128, help="ConvNet-3 width (tiny values for tests)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--test-repeats", type=int, default=2)
    a = ap.parse_args(argv)
    bad = [i for i in a.impls.split(",") if i not in IMPLS]
    if bad:
        ap.error(f"--impls: unknown {', '.join(bad)} (known: {', '.join(IMPLS)})")
    if "vmap+compile+graphs" in a.impls.split(",") and not a.device.startswith("cuda"):
        ap.error("--impls vmap+compile+graphs: CUDA graphs need --device cuda")
    try:
        a.sizes = [int(v) for v in a.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes: '{a.sizes}' is not a comma list of numbers")
    if min(a.sizes) < 1 or a.test_images < 1 or a.threads < 1 or a.width < 1:
        ap.error("--sizes, --test-images, --threads and --width must be positive")
    return a


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Before torch is imported: inductor reads these when it loads.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", f"/tmp/ddr-torchinductor-{os.getuid()}")
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(ARGS.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


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


def loop_impl(s, dev, x, y, tx, ty, width, chunk):
    """S independent models, one after another (DD-Ranking's train_and_eval per student)."""
    nets = [convnet3(width).to(dev) for _ in range(s)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for n in nets]

    def step():
        for i, (n, o) in enumerate(zip(nets, opts)):
            n.train()
            o.zero_grad(set_to_none=True)
            F.cross_entropy(n(x[i]), y[i]).backward()
            o.step()

    def test(limit=None):
        """Every student over the first `limit` test images (all N when None)."""
        correct, n_img = 0, tx.shape[0] if limit is None else min(limit, tx.shape[0])
        with torch.no_grad():
            for n in nets:
                n.eval()
                for a in range(0, n_img, chunk):
                    correct += (n(tx[a:a + chunk]).argmax(1) == ty[a:a + chunk]).sum()
        return int(correct)

    return step, test


def vmap_impl(s, dev, x, y, tx, ty, width, chunk, compile_, bf16, graphs):
    """S students as one stacked ensemble: vmap(functional_call), grad, fused SGD on stacks."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    nets = [convnet3(width).to(dev) for _ in range(s)]
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
        mode = "reduce-overhead" if graphs else "default"
        step_core = torch.compile(step_core, mode=mode)
        logits_all = torch.compile(logits_all, mode=mode)

    def step():
        step_core(params, mom, x, y)

    def test(limit=None):
        """Every student over the first `limit` test images (all N when None)."""
        correct, n_img = 0, tx.shape[0] if limit is None else min(limit, tx.shape[0])
        with torch.no_grad():
            for a in range(0, n_img, chunk):
                out = logits_all(params, tx[a:a + chunk])  # (S, chunk, 10)
                correct += (out.argmax(-1) == ty[a:a + chunk]).sum()
        return int(correct)

    return step, test


def cpu_flags():
    """The CPU's AMX / AVX-512 bf16 support (what decides whether bf16 autocast can win)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return None
    return {k: k in flags for k in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")}


def main(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else f"cpu ({a.threads} threads, {platform.processor() or platform.machine()})")
    for s in a.sizes:
        chunk = min(TEST_CHUNK, max(1, TEST_ROWS_PER_FORWARD // s))
        x = torch.rand(s, BATCH, 3, 32, 32, device=dev) * 2 - 1  # (S, B, 3, 32, 32)
        y = torch.randint(0, 10, (s, BATCH), device=dev)  # (S, B)
        tx = torch.rand(a.test_images, 3, 32, 32, device=dev) * 2 - 1  # (N, 3, 32, 32)
        ty = torch.randint(0, 10, (a.test_images,), device=dev)  # (N,)
        for impl in a.impls.split(","):
            rec = {"impl": impl, "students": s, "batch": BATCH, "test_images": a.test_images,
                   "test_chunk": chunk, "width": a.width, "device": name, "threads": a.threads,
                   "torch": torch.__version__, "python": platform.python_version(),
                   "loadavg_1m_before": os.getloadavg()[0]}
            if dev.type == "cpu":
                rec["cpu_flags"] = cpu_flags()
            try:
                if impl == "loop":
                    step, test = loop_impl(s, dev, x, y, tx, ty, a.width, chunk)
                else:
                    parts = impl.split("+")
                    step, test = vmap_impl(s, dev, x, y, tx, ty, a.width, chunk, "compile" in parts,
                                           "bf16" in parts, "graphs" in parts)
                t0 = time.perf_counter()
                for _ in range(a.warmup):
                    step()
                # Warm-up (and compilation) of the test path: one forward of a full chunk, as
                # `ddr-fast bench` warms up (N divisible by the chunk has no other shape).
                test(chunk)
                rec["warmup_s"] = time.perf_counter() - t0
                m, sd, n, c = timed(step, a.repeats, dev)
                rec.update(train_step_s_mean=m, train_step_s_std=sd, n_train_steps=n,
                           train_img_per_s=s * BATCH / m,
                           train_img_per_s_cpu_time=s * BATCH / (c / a.threads))
                m, sd, n, c = timed(lambda: test(), a.test_repeats, dev)
                rec.update(test_pass_s_mean=m, test_pass_s_std=sd, n_test_passes=n,
                           test_img_per_s=s * a.test_images / m,
                           test_img_per_s_cpu_time=s * a.test_images / (c / a.threads))
            except Exception as e:  # a configuration PyTorch cannot run here is reported, not hidden
                rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            rec["loadavg_1m_after"] = os.getloadavg()[0]
            # Peak RSS of this process so far (Linux: KiB); one (impl, S) per process makes it theirs.
            rec["max_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if dev.type == "cuda":
                rec["max_cuda_alloc_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
            print(json.dumps(rec, sort_keys=True), flush=True)
            sys.stderr.write(f"{impl} S={s}: {rec.get('train_img_per_s', rec.get('error'))}\n")


if __name__ == "__main__":
    main(ARGS)
