#!/usr/bin/env python3
"""Write benches/REPORT.md from the two sides of issue 8, item 7:

  ddr-fast  the JSON lines of `ddr-fast bench --json` runs (benches/results/ddr_fast_bench*.jsonl,
            written by tools/bench_cohorts.py), else criterion's results of
            `cargo bench --bench cohort_sizes` (target/criterion/cohort_*/)
  PyTorch   the JSON lines of tools/pytorch_baseline.py (benches/results/pytorch_baseline*.jsonl)

    python3 tools/bench_report.py [--criterion target/criterion] [--torch FILE ...] [--ddr FILE ...]
        [--out benches/REPORT.md] [--note TEXT ...]

Every number in the report comes from those files (for each device, side and S the last record
wins; records of another width than 128, i.e. test runs, are ignored); a cell without a
measurement says so, a size skipped for memory shows the need tools/bench_cohorts.py predicted.
"""

import argparse
import glob
import json
import os
import platform
import re
import subprocess
from collections import defaultdict

SIZES = [1, 8, 64, 256]
TORCH_IMPLS = ["loop", "vmap", "vmap+compile", "vmap+compile+bf16"]
TORCH_GPU_IMPLS = ["loop", "vmap", "vmap+compile", "vmap+compile+graphs"]
WIDTH = 128


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001 - the report names what it could not find
        return ""


def criterion_rows(root):
    """{(backend, workload, S): (seconds per iteration, n samples, images per iteration)}."""
    out = {}
    for est in glob.glob(os.path.join(root, "cohort_*", "*", "*", "new", "estimates.json")):
        parts = est.split(os.sep)
        group, fn, s = parts[-5], parts[-4], parts[-3]
        if not s.isdigit():
            continue
        backend = group[len("cohort_"):]
        with open(est) as f:
            mean_ns = json.load(f)["mean"]["point_estimate"]
        bench = os.path.join(os.path.dirname(est), "benchmark.json")
        sample = os.path.join(os.path.dirname(est), "sample.json")
        elems = None
        if os.path.exists(bench):
            with open(bench) as f:
                thr = json.load(f).get("throughput") or {}
                elems = thr.get("Elements")
        n = None
        if os.path.exists(sample):
            with open(sample) as f:
                n = len(json.load(f).get("iters", []))
        workload = "train" if fn.startswith("train_step") else "test"
        test_images = int(m.group(1)) if (m := re.search(r"test_pass_(\d+)", fn)) else None
        out[(backend, workload, int(s))] = (mean_ns * 1e-9, n, elems, test_images)
    return out


def read_records(paths):
    """Every record of these files, in order: JSON lines, or one JSON object per file."""
    out = []
    for p in paths:
        with open(p) as f:
            text = f.read()
        if p.endswith(".jsonl"):
            out += [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        elif text.strip():
            out.append(json.loads(text))
    # Other widths are test runs; a "purpose" (a memory probe) is not a throughput measurement.
    return [r for r in out if r.get("width", WIDTH) == WIDTH and "purpose" not in r]


def kind(r):
    return "cpu" if r.get("device", "cpu").startswith("cpu") else "gpu"


def ddr_bench_rows(paths):
    """{(device kind, S): record} from `ddr-fast bench --json` (the last record wins)."""
    return {(kind(r), r["students"]): r for r in read_records(paths)}


def torch_rows(paths):
    """{(device kind, impl, S): record} (the last record wins)."""
    return {(kind(r), r["impl"], r["students"]): r for r in read_records(paths)}


def cell(r, workload):
    """One cell: wall / CPU-time img/s (n, N, load), or why there is no number."""
    if r is None:
        return "not measured here"
    if r.get("skipped") == "time":
        return f"not run: ≥ {r['needs_s'] / 60:.0f} min at this load"
    if "skipped" in r or ("needs_gib" in r and "error" in r):
        also = f"; ≥ {r['needs_s'] / 60:.0f} min" if r.get("needs_s") else ""
        return f"needs ≈ {r['needs_gib']:.0f} GiB{also}"
    if "error" in r:
        return f"failed: {r['error'][:80]}"
    if workload == "train":
        wall = r.get("train_img_per_s", r.get("train_step_img_per_s"))
        cpu, n, extra = r.get("train_img_per_s_cpu_time", r.get("train_step_img_per_s_cpu_time")), r["n_train_steps"], ""
    else:
        wall, cpu, n = r["test_img_per_s"], r.get("test_img_per_s_cpu_time"), r["n_test_passes"]
        extra = f", N = {r['test_images']}"
    load = r.get("loadavg_1m_before")
    if load is not None:
        extra += f", load {load:.0f}"
    return f"{fmt_rate(wall)} / {fmt_rate(cpu)} ({n}{extra})"


def fmt_rate(v):
    return f"{v:,.0f}" if v is not None else "—"


def cpu_rate(r, workload):
    """The CPU-time img/s of a measured record, else None."""
    if not r or "error" in r or "skipped" in r:
        return None
    if workload == "train":
        return r.get("train_img_per_s_cpu_time", r.get("train_step_img_per_s_cpu_time"))
    return r.get("test_img_per_s_cpu_time")


def ratio_cell(ddr, torch_recs, workload):
    """ddr-fast's CPU-time rate over the best measured PyTorch configuration's, naming it."""
    mine = cpu_rate(ddr, workload)
    best = max(((cpu_rate(r, workload), r["impl"]) for r in torch_recs if cpu_rate(r, workload)),
               default=None)
    if mine is None or best is None:
        return "—"
    return f"{mine / best[0]:.1f}× ({best[1]})"


def rss_gib(r):
    return r["max_rss_kib"] / 2**20 if r and r.get("max_rss_kib") and "error" not in r else None


def cpu_flags(pt):
    """What the PyTorch runs saw of the CPU's bf16 support, as words."""
    flags = next((r["cpu_flags"] for r in pt.values() if r.get("cpu_flags")), None)
    if not flags:
        return "bf16 support not recorded"
    has = [k for k in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if flags.get(k)]
    amx = "AMX" if flags.get("amx_bf16") else "no AMX"
    return f"{amx}; vector ISA: {', '.join(has) or 'none of avx2/avx512'}"


def load_range(records):
    loads = [r[k] for r in records for k in ("loadavg_1m_before", "loadavg_1m_after") if r.get(k) is not None]
    return f"{min(loads):.0f}–{max(loads):.0f}" if loads else "not recorded"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--torch", nargs="*", default=sorted(glob.glob("benches/results/pytorch_baseline*.jsonl")))
    ap.add_argument("--ddr", nargs="*", default=sorted(glob.glob("benches/results/ddr_fast_bench*.jsonl")))
    ap.add_argument("--out", default="benches/REPORT.md")
    ap.add_argument("--note", action="append", default=[])
    a = ap.parse_args()
    crit = criterion_rows(a.criterion)
    ddr = ddr_bench_rows(a.ddr)
    pt = torch_rows(a.torch)
    cpu_model = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    mem_gib = sh("free -g | awk '/Mem:/{print $2}'")
    rustc = sh("rustc -V")
    version = sh("sed -n 's/^version = //p' Cargo.toml | head -1").strip('"')
    torch_versions = sorted({r["torch"] for r in pt.values() if "torch" in r})
    cpu_records = [r for (k, *_), r in list(ddr.items()) + list(pt.items()) if k == "cpu"]
    dates = sorted(r["date_utc"] for r in cpu_records if r.get("date_utc"))
    lines = [
        "# ddr-fast vs PyTorch: training step and test pass by cohort size",
        "",
        "Generated by `python3 tools/bench_report.py` from the JSON lines that `tools/bench_cohorts.py` "
        "appends to benches/results/ (`ddr-fast bench --json` and `tools/pytorch_baseline.py`, one "
        "process per side and S); do not edit by hand.",
        "",
        "Workload: ConvNet-3 (width 128, instance norm, ReLU, 2×2 average pooling, linear head), "
        "CIFAR shape 3×32×32, 10 classes, SGD (momentum 0.9, weight decay 5e-4), cross-entropy. "
        "Training step: S students × batch 100 (forward, loss, backward, update). Test pass: every student "
        "over the same N test images, in forwards of min(500, 12,800 / S) images per student on both sides. "
        "Throughput in **student-images per second** (S × images / time).",
        "",
        "PyTorch configurations: **loop** = DD-Ranking's way (S separate models, one after another); "
        "**vmap** = the S students stacked, `torch.func.vmap` over `functional_call` with `torch.func.grad`, "
        "SGD on the stacks; **+compile** = the step and the test forward under `torch.compile` "
        "(inductor, C++ codegen on the CPU); **+bf16** = bf16 autocast inside the compiled step and test "
        "(PyTorch's fastest CPU configuration on processors with AMX); **+graphs** (GPU only) = "
        "`mode=\"reduce-overhead\"`, i.e. CUDA graphs.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {cpu_model}, {os.cpu_count()} logical CPUs ({cpu_flags(pt)}); {mem_gib} GiB RAM, "
        "shared by several engineers' builds.",
        f"- Load average (1 min) during the CPU runs: {load_range(cpu_records)}"
        + (f", runs from {dates[0]} to {dates[-1]}" if dates else "")
        + f"; at generation {os.getloadavg()[0]:.0f}.",
        f"- {rustc}; ddr-fast {version}; "
        f"PyTorch {', '.join(torch_versions) or 'not run'}; Python {platform.python_version()}.",
        "- Cells: **wall-clock** student-images/s, then `/` the same per CPU-second × threads (process CPU "
        "time: removes the time a process spent descheduled on this shared machine; it still pays for "
        "the cache misses other jobs cause), then (n, test images N, 1-minute load average when the run "
        "started). n: timed steps / passes after warm-up (PyTorch compiles during warm-up). "
        "\"needs ≈ N GiB\": not run, since its peak RSS, fitted from the peak RSS measured at smaller "
        "sizes (or the RSS at which the run was killed), exceeds what one process may take on this "
        "shared machine (fits under the memory table). \"not run: ≥ N min\": its wall time, from lines in S through the "
        "step and pass times measured at smaller S (compilation not counted), exceeds the per-run limit "
        "under this machine's load. Last column: ddr-fast's CPU-time rate over the best PyTorch "
        "configuration measured at that S (named).",
        "",
        "## Commands",
        "",
        "The runs behind the CPU tables (each record in benches/results/ also carries its exact command):",
        "",
        "```sh",
        "cargo build --release --bin ddr-fast",
        "T=/tmp/fid/venv/bin/python   # torch 2.15 CPU",
        "python3 tools/bench_cohorts.py --sizes 1,8 --sides ddr-fast --test-images 1000",
        "python3 tools/bench_cohorts.py --sizes 1 --sides loop,vmap,vmap+compile,vmap+compile+bf16 "
        "--test-images 1000 --python $T",
        "python3 tools/bench_cohorts.py --sizes 8 --sides loop,vmap,vmap+compile --test-images 1000 "
        "--warmup 1 --repeats 3 --test-repeats 1 --python $T",
        "python3 tools/bench_cohorts.py --sizes 8 --sides vmap+compile+bf16 --test-images 1000 "
        "--warmup 1 --repeats 1 --test-repeats 1 --python $T",
        "# memory probe (split of ddr-fast's RSS into training and test workspace; not a table cell):",
        "/usr/bin/time -v target/release/ddr-fast bench --json --students 8 --test-images 1000 "
        "--test-batch 50 --threads 2 --warmup 1 --repeats 1 --test-repeats 1",
        "python3 tools/bench_cohorts.py --sizes 64,256 --test-images 1000 --warmup 1 --repeats 1 "
        "--test-repeats 1 --skip-slow --timeout 900 --python $T",
        "python3 tools/bench_report.py",
        "# GPU rows: tools/gpu-check.sh (step cohorts) runs tools/bench_cohorts.py --device cuda "
        "--test-images 10000 and appends to the same files",
        "```",
        "",
    ]
    for note in a.note:
        lines += [f"> {note}", ""]
    for workload, title in (("train", "Training step (batch 100 per student)"), ("test", "Test pass")):
        lines += [f"## {title}: CPU", ""]
        head = ("| S | ddr-fast CPU (n) | " + " | ".join(f"PyTorch {i} (n)" for i in TORCH_IMPLS)
                + " | ddr-fast ÷ best PyTorch (CPU time) |")
        lines += [head, "|" + "---|" * (3 + len(TORCH_IMPLS))]
        for s in SIZES:
            r = ddr.get(("cpu", s))
            d = crit.get(("cpu", workload, s))
            if r is None and d:
                t, n, elems, ti = d
                extra = f", N = {ti}" if ti else ""
                cells = [f"{fmt_rate(elems / t if elems else None)} / — ({n} criterion samples{extra})"]
            else:
                cells = [cell(r, workload)]
            cells += [cell(pt.get(("cpu", impl, s)), workload) for impl in TORCH_IMPLS]
            cells.append(ratio_cell(r, [pt.get(("cpu", impl, s)) for impl in TORCH_IMPLS], workload))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines += ["", f"## {title}: GPU", ""]
        head = "| S | ddr-fast CUDA | " + " | ".join(f"PyTorch {i}" for i in TORCH_GPU_IMPLS) + " |"
        lines += [head, "|" + "---|" * (2 + len(TORCH_GPU_IMPLS))]
        for s in SIZES:
            cells = []
            for r in [ddr.get(("gpu", s))] + [pt.get(("gpu", impl, s)) for impl in TORCH_GPU_IMPLS]:
                cells.append(cell(r, workload) if r else "not yet measured")
            d = crit.get(("cuda", workload, s))
            if not ddr.get(("gpu", s)) and d and d[2]:
                cells[0] = f"{fmt_rate(d[2] / d[0])} ({d[1]} criterion samples)"
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Peak memory on the CPU (RSS of the process, GiB: training step and test pass together)", ""]
    sides = [("ddr-fast", lambda s: ddr.get(("cpu", s)))] + [
        (f"PyTorch {i}", (lambda i: lambda s: pt.get(("cpu", i, s)))(i)) for i in TORCH_IMPLS]
    lines += ["| S | " + " | ".join(n for n, _ in sides) + " |", "|" + "---|" * (1 + len(sides))]
    for s in SIZES:
        cells = []
        for _, get in sides:
            r = get(s)
            if r is None:
                cells.append("—")
            elif rss_gib(r) is not None:
                cells.append(f"{rss_gib(r):.2f}")
            elif r.get("needs_gib") is not None:
                cells.append(f"needs ≈ {r['needs_gib']:.1f}")
            elif r.get("skipped") == "time":
                cells.append("not run (time)")
            else:
                cells.append("—")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    needs = [r for (k, *_), r in list(ddr.items()) + list(pt.items()) if k == "cpu" and r.get("needs_basis")]
    order = ["ddr-fast"] + TORCH_IMPLS
    needs.sort(key=lambda r: (order.index(r["impl"]) if r.get("impl") in order else 99, r["students"]))
    bases = [f"{r.get('impl', 'ddr-fast')} S = {r['students']}: {r['needs_basis']}" for r in needs]
    if bases:
        lines += ["", "Predicted needs:", ""] + [f"- {b}" for b in bases]
    lines.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
