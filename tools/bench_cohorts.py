#!/usr/bin/env python3
"""Runs both sides of benches/REPORT.md (issue 8, item 7), one (side, S) per process, and appends
one JSON line per run to the results that tools/bench_report.py reads:

  ddr-fast  `ddr-fast bench --json` (CPU or CUDA)      → RESULTS/ddr_fast_bench.jsonl
  PyTorch   tools/pytorch_baseline.py, one impl each   → RESULTS/pytorch_baseline.jsonl

    python3 tools/bench_cohorts.py --device cpu --sizes 1,8,64,256 --test-images 1000 --max-gib 6
    python3 tools/bench_cohorts.py --device cuda --sizes 1,8,64,256 --test-images 10000   # GPU day

Every run is wrapped in `/usr/bin/time -v` (its peak RSS goes into the record as max_rss_kib) and
watched: on the CPU, a run whose processes' summed RSS passes --max-gib is killed and recorded as
such (the machine is shared). Before a size runs, the peak RSS already measured for the same side
at two smaller sizes is fitted linearly in S; if the fit predicts more than --max-gib the size is
not run and a record with the predicted need (`needs_gib`, `needs_basis`) is written instead, which
the report prints in place of a number. On a GPU no size is skipped: an out-of-memory run is
recorded as its error.
"""

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_CPU_IMPLS = "loop,vmap,vmap+compile,vmap+compile+bf16"
TORCH_GPU_IMPLS = "loop,vmap,vmap+compile,vmap+compile+graphs"
# Student-rows per test forward on both sides (benches/cohort_sizes.rs uses the same bound).
TEST_ROWS_PER_FORWARD = 12_800
GIB = 2**30


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", default="1,8,64,256")
    ap.add_argument("--sides", default=None,
                    help="comma list: ddr-fast and PyTorch impls (default: ddr-fast and every impl "
                    f"of the device: cpu {TORCH_CPU_IMPLS}; cuda {TORCH_GPU_IMPLS})")
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of either side")
    ap.add_argument("--width", type=int, default=128, help="ConvNet-3 width (tiny values for tests)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed training steps")
    ap.add_argument("--test-repeats", type=int, default=2, help="timed test passes")
    ap.add_argument("--max-gib", type=float, default=None,
                    help="CPU: skip or kill a run above this RSS (default 6; ignored on cuda)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per (side, S) run")
    ap.add_argument("--skip-slow", action="store_true",
                    help="do not start a run whose wall time, fitted from smaller S, exceeds --timeout "
                    "(a record says so and the report prints the predicted time)")
    ap.add_argument("--ddr-bin", default=os.path.join(REPO, "target/release/ddr-fast"))
    ap.add_argument("--python", default=os.environ.get("DDR_TORCH_PYTHON", sys.executable),
                    help="the interpreter with torch (default $DDR_TORCH_PYTHON, else this one)")
    ap.add_argument("--results", default=os.path.join(REPO, "benches/results"),
                    help="folder of ddr_fast_bench.jsonl and pytorch_baseline.jsonl")
    ap.add_argument("--probe-test-batch", type=int, default=None,
                    help="memory probe: run with this many test images per student per forward "
                    "(ddr-fast's --test-batch) and mark the records as such; the report leaves them "
                    "out of the throughput cells, the RSS fit uses them to split training from test")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a = ap.parse_args(argv)
    try:
        a.sizes = sorted({int(v) for v in a.sizes.split(",")})
    except ValueError:
        ap.error(f"--sizes: '{a.sizes}' is not a comma list of numbers")
    if a.sizes[0] < 1:
        ap.error("--sizes: every S must be ≥ 1")
    known = ["ddr-fast"] + (TORCH_CPU_IMPLS if a.device == "cpu" else TORCH_GPU_IMPLS).split(",")
    a.sides = (a.sides or ",".join(known)).split(",")
    bad = [s for s in a.sides if s not in known]
    if bad:
        ap.error(f"--sides: {', '.join(bad)} not known on {a.device} (known: {', '.join(known)})")
    if a.probe_test_batch is not None and a.sides != ["ddr-fast"]:
        ap.error("--probe-test-batch: only with --sides ddr-fast (tools/pytorch_baseline.py fixes its chunk)")
    if a.max_gib is None:
        a.max_gib = 6.0 if a.device == "cpu" else float("inf")
    return a


def test_chunk(s):
    return min(500, max(1, TEST_ROWS_PER_FORWARD // s))


def command(a, side, s):
    if side == "ddr-fast":
        tb = a.probe_test_batch or test_chunk(s)
        return [a.ddr_bin, "bench", "--json", "--device", a.device, "--students", str(s),
                "--test-images", str(a.test_images), "--test-batch", str(tb),
                "--threads", str(a.threads), "--warmup", str(a.warmup), "--repeats", str(a.repeats),
                "--test-repeats", str(a.test_repeats)]
    return [a.python, os.path.join(REPO, "tools/pytorch_baseline.py"), "--device", a.device,
            "--impls", side, "--sizes", str(s), "--test-images", str(a.test_images),
            "--threads", str(a.threads), "--width", str(a.width), "--warmup", str(a.warmup),
            "--repeats", str(a.repeats), "--test-repeats", str(a.test_repeats)]


def results_file(a, side):
    name = "ddr_fast_bench.jsonl" if side == "ddr-fast" else "pytorch_baseline.jsonl"
    return os.path.join(a.results, name)


def session_pids(sid):
    """Every process of session `sid` (a run and all its children: `timeout` moves itself into a
    process group of its own, but not out of the session)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            # Fields after the command's closing parenthesis: state ppid pgrp session ...
            if int(stat[stat.rindex(")") + 2:].split()[3]) == sid:
                pids.append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def session_rss_kib(sid):
    """Summed VmRSS (KiB) of every process in session `sid`."""
    total = 0
    for pid in session_pids(sid):
        try:
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M)
            total += int(m.group(1)) if m else 0
        except OSError:
            continue
    return total


def kill_session(sid):
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# The run in progress. Each run is its own session (for the RSS watch), so if this driver
# is stopped (a step timeout in tools/gpu-check.sh) it must stop that session itself.
CURRENT = [None]


def stop(*_):
    p = CURRENT[0]
    if p is not None:
        kill_session(p.pid)
    sys.exit(143)


def run_one(a, side, s):
    """Runs one (side, S); returns its record (the program's JSON plus what the wrapper saw)."""
    cmd = command(a, side, s)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-v", "-o", tf.name, "timeout", str(a.timeout)] + cmd
        t0 = time.time()
        p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, cwd=REPO)
        CURRENT[0] = p
        killed = {}

        def watch():
            while p.poll() is None:
                rss = session_rss_kib(p.pid)
                if rss > a.max_gib * GIB / 1024:
                    killed["rss_kib"] = rss
                    kill_session(p.pid)
                    return
                time.sleep(0.5)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        out, err = p.communicate()
        w.join()
        CURRENT[0] = None
        timing = tf.read()
    rec = {}
    if "{" in out:
        try:
            rec = json.loads(out[out.index("{"):out.rindex("}") + 1])
        except json.JSONDecodeError:
            rec = {}
    rec.setdefault("impl", side)
    rec.setdefault("students", s)
    rec.setdefault("test_images", a.test_images)
    rec.setdefault("device", a.device if side != "ddr-fast" else f"{a.device} ({a.threads} threads)")
    rec["width"] = rec.get("width", a.width)
    rec["command"] = " ".join(shlex.quote(c) for c in cmd)
    if a.probe_test_batch:
        rec["purpose"] = f"memory probe at test batch {a.probe_test_batch}"
    rec["wall_s_total"] = time.time() - t0
    rec["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing)
    if m:
        rec["max_rss_kib"] = int(m.group(1))
    if killed:
        rec["error"] = (f"killed: its processes' RSS reached {killed['rss_kib'] / 2**20:.1f} GiB "
                        f"> --max-gib {a.max_gib}")
        rec["needs_gib"] = killed["rss_kib"] / 2**20
        rec["needs_basis"] = "more than the RSS at which the run was killed"
    elif p.returncode != 0 and "error" not in rec:
        why = "timed out" if p.returncode == 124 else f"exit {p.returncode}"
        rec["error"] = f"{why}: {(err.strip().splitlines() or [''])[-1][:200]}"
    return rec


def load_records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def runs_below(a, side, s):
    """The successful runs of `side` below S with these settings (memory-only runs included)."""
    return [r for r in load_records(results_file(a, side))
            if r.get("impl", "ddr-fast") == side and "error" not in r and "skipped" not in r
            and r.get("width", 128) == a.width and r.get("test_images") == a.test_images
            and r.get("students", 0) < s and r.get("device", "").startswith(a.device)]


def measured(a, side, s, key):
    """{S: record[key]} of the throughput runs of `side` below S (the last one per S)."""
    return {r["students"]: r[key] for r in runs_below(a, side, s) if r.get(key) and "purpose" not in r}


def fit(pts, s):
    """Linear extrapolation to S from the two largest S in pts: (value, slope, (S0, v0), (S1, v1))."""
    (s0, v0), (s1, v1) = sorted(pts.items())[-2:]
    per = (v1 - v0) / (s1 - s0)
    return v1 + per * (s - s1), per, (s0, v0), (s1, v1)


def solve3(m, v):
    """x with m x = v for a 3×3 m (Gauss-Jordan with partial pivoting); None when singular."""
    m = [row[:] + [b] for row, b in zip(m, v)]
    for c in range(3):
        p = max(range(c, 3), key=lambda r: abs(m[r][c]))
        if abs(m[p][c]) < 1e-12:
            return None
        m[c], m[p] = m[p], m[c]
        for r in range(3):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    return [m[i][3] / m[i][i] for i in range(3)]


def rows_fit(a, side, s):
    """RSS = base + per_student·S + per_row·(S·test chunk), least squares over the runs below S
    (needs runs at two test chunks, e.g. a memory-only run with a smaller --test-batch); None if
    the runs cannot separate the three terms."""
    pts = {(r["students"], r["students"] * r.get("test_batch", r.get("test_chunk", 0))):
           r["max_rss_kib"] / 2**20 for r in runs_below(a, side, s) if r.get("max_rss_kib")}
    if len(pts) < 3:
        return None
    xs = [(1.0, float(k[0]), float(k[1])) for k in pts]
    ata = [[sum(x[i] * x[j] for x in xs) for j in range(3)] for i in range(3)]
    atb = [sum(x[i] * g for x, g in zip(xs, pts.values())) for i in range(3)]
    coef = solve3(ata, atb)
    if coef is None:
        return None
    base, per_s, per_row = coef
    need = base + per_s * s + per_row * s * test_chunk(s)
    where = ", ".join(f"S = {k[0]} × {k[1] // k[0]} test rows: {g:.2f} GiB" for k, g in sorted(pts.items()))
    return need, (f"least-squares fit of the peak RSS ({where}): {base:.2f} GiB + {per_s * 1024:.0f} MiB "
                  f"per student + {per_row * 1024:.2f} MiB per test row in flight, at "
                  f"{test_chunk(s)} test rows per student")


def rss_fit(a, side, s):
    """(predicted GiB, basis) for `side` at S: the rows fit when the runs allow it, else a line
    through the peak RSS at the two largest smaller S. Both sides' test forwards hold
    S·min(500, 12,800 / S) rows, i.e. 500 per student up to S = 25: above that the line
    overestimates the test pass's share (the basis says so)."""
    by_rows = rows_fit(a, side, s)
    if by_rows:
        return by_rows
    pts = {k: v / 2**20 for k, v in measured(a, side, s, "max_rss_kib").items()}
    if len(pts) < 2:
        return None
    need, per, (s0, g0), (s1, g1) = fit(pts, s)
    capped = " (test rows capped at 12,800 from S = 26: an overestimate of the test pass's share)" \
        if s * 500 > 12_800 else ""
    return need, (f"linear fit of the peak RSS measured at S = {s0} ({g0:.2f} GiB) and S = {s1} "
                  f"({g1:.2f} GiB): {per * 1024:.0f} MiB per student{capped}")


def time_fit(a, side, s):
    """(predicted seconds, basis) of a run at S: lines in S through the mean training-step and
    test-pass times at the two largest smaller S, times this run's steps and passes (warm-up
    included, compilation not: a lower bound), or None."""
    step = {k: v / 1000 for k, v in measured(a, side, s, "train_step_ms_mean").items()}
    step = step or measured(a, side, s, "train_step_s_mean")
    test = measured(a, side, s, "test_pass_s_mean")
    if len(step) < 2 or len(test) < 2:
        return None
    st, ps = fit(step, s)[0], fit(test, s)[0]
    passes = a.test_repeats + min(1.0, test_chunk(s) / a.test_images)
    need = (a.warmup + a.repeats) * st + passes * ps
    return need, (f"≥ {need / 60:.0f} min: {a.warmup + a.repeats} training steps of ≈ {st:.0f} s and "
                  f"{passes:.1f} test passes of ≈ {ps:.0f} s, each a line in S through the means "
                  f"measured at S = {', '.join(str(k) for k in sorted(step)[-2:])}, this machine's load included")


def main(a):
    """Exit status 1 if any run failed (a size skipped or a run killed for memory is a limit of
    this machine, not a failure)."""
    signal.signal(signal.SIGTERM, stop)
    os.makedirs(a.results, exist_ok=True)
    failed = 0
    for s in a.sizes:
        for side in a.sides:
            if a.dry_run:
                print(" ".join(shlex.quote(c) for c in command(a, side, s)), "  >>", results_file(a, side))
                continue
            mem = rss_fit(a, side, s) if a.device == "cpu" and not a.probe_test_batch else None
            dur = time_fit(a, side, s) if a.skip_slow else None
            skip = {"impl": side, "students": s, "test_images": a.test_images, "width": a.width,
                    "device": f"{a.device} ({a.threads} threads)",
                    "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if mem and mem[0] > a.max_gib:
                rec = dict(skip, skipped="memory", needs_gib=mem[0], needs_basis=mem[1],
                           max_gib=a.max_gib)
                if dur and dur[0] > a.timeout:  # both limits: say both
                    rec.update(needs_s=dur[0], needs_basis=f"{mem[1]}; time: {dur[1]}")
            elif dur and dur[0] > a.timeout:
                rec = dict(skip, skipped="time", needs_s=dur[0], needs_basis=dur[1],
                           timeout_s=a.timeout)
            else:
                rec = run_one(a, side, s)
            failed += "error" in rec and "needs_gib" not in rec
            with open(results_file(a, side), "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            train = rec.get("train_img_per_s", rec.get("train_step_img_per_s"))
            what = rec.get("error") or rec.get("skipped") or f"train {train} img/s, test {rec.get('test_img_per_s')} img/s"
            rss = rec.get("max_rss_kib")
            sys.stderr.write(f"bench_cohorts: {side} S={s}: {what}"
                             + (f", peak RSS {rss / 2**20:.2f} GiB" if rss else "") + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
