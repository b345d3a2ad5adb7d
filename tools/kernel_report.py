#!/usr/bin/env python3
"""Static report on the built CUDA kernels, read from their SASS (no GPU needed).

Usage: kernel_report.py BIN_DIR THRESHOLDS FATBIN... [--tsv OUT]
  BIN_DIR     holds cuobjdump and nvdisasm (tools/kernel-report.sh installs them)
  THRESHOLDS  tools/kernel-report-thresholds.txt: `<kernel glob> <max other instructions per HMMA>`

Per kernel and architecture it prints registers, local memory (spills), shared memory, and for
each *main loop* (an innermost loop that holds tensor-core instructions, HMMA) the number of
other instructions per HMMA and the loops hiding inside it. Exit status 1 on local memory use
(spills or stack arrays), on a loop or call inside a main loop, or on a ratio above the
thresholds file; 2 on a tool failure.

Loops are found the way nvcc lays them out: a backward branch `BRA target` at offset b with
target t ≤ b closes the loop [t, b]; a CALL is a subroutine (64-bit division and the like),
except a `CALL.REL.NOINC` to a label of the same function, an sm_8x loop-exit idiom. A main loop is such a range that contains an HMMA and no
smaller HMMA-holding range; any other backward branch or CALL inside it is a hidden inner loop
(its body would run many times per pass, so a static count would understate the cost).
Counts are static: each instruction in the range once. NOPs (alignment padding) are not counted.
Each main loop also counts its 128-bit LDGSTS (16-byte cp.async; TSV column `ldgsts128`): a kernel
with one main loop per load width (conv_gemm_bf16.cuh: 16-byte or 4-byte weight copies) is told
apart by it, not by its offset.
"""

import fnmatch
import os
import re
import subprocess
import sys
import tempfile

# Multiply-adds per HMMA shape (m·n·k), so instruction counts can be turned into work.
MMA_MACS = {"1684": 16 * 8 * 4, "1688": 16 * 8 * 8, "16816": 16 * 8 * 16, "16832": 16 * 8 * 32}

INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);")
LABEL = re.compile(r"^(\.L_x_\d+):")
BRANCH_TARGET = re.compile(r"`\((\.L_x_\d+)\)")
SECTION = re.compile(r"^\.text\.(\S+):")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(f"kernel-report: {' '.join(cmd)} failed:\n{p.stderr}")
        sys.exit(2)
    return p.stdout


def resources(cuobjdump, fatbin):
    """{(arch, kernel): {"REG": n, "SHARED": n, "LOCAL": n, "STACK": n}} from -res-usage."""
    out, arch, kernel = {}, None, None
    for line in run([cuobjdump, "-res-usage", fatbin]).splitlines():
        m = re.match(r"arch = (sm_\d+)", line.strip())
        if m:
            arch = m.group(1)
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            kernel = m.group(1)
        elif kernel and "REG:" in line:
            out[(arch, kernel)] = {k: int(v) for k, v in re.findall(r"(\w+(?:\[\d\])?):(\d+)", line)}
            kernel = None
    return out


def functions(listing):
    """{kernel: [(offset, opcode, text)]} and {kernel: {label: offset}} of an nvdisasm listing."""
    code, labels, cur, pending = {}, {}, None, []
    for line in listing.splitlines():
        m = SECTION.match(line.strip())
        if m:
            cur = m.group(1)
            code[cur], labels[cur], pending = [], {}, []
            continue
        if cur is None:
            continue
        m = LABEL.match(line.strip())
        if m:
            pending.append(m.group(1))
            continue
        m = INSTR.search(line)
        if m:
            off = int(m.group(1), 16)
            for lab in pending:
                labels[cur][lab] = off
            pending = []
            code[cur].append((off, m.group(3), m.group(0)))
    return code, labels


def loops_of(instrs, labels):
    """[(start, end)] of every backward branch, plus the offsets of CALLs."""
    loops, calls = [], []
    for off, op, text in instrs:
        if op.startswith("BRA"):
            m = BRANCH_TARGET.search(text)
            if m and m.group(1) in labels and labels[m.group(1)] <= off:
                loops.append((labels[m.group(1)], off))
        elif op.startswith("CALL"):
            m = BRANCH_TARGET.search(text)
            # `@P CALL.REL.NOINC` to a label of this same function is how nvcc leaves a loop on
            # sm_8x (a jump past the back edge, no subroutine); real calls go to other sections.
            if m and m.group(1) in labels:
                continue
            calls.append(off)
    return loops, calls


def main_loops(instrs, labels):
    loops, calls = loops_of(instrs, labels)
    hmma_at = [off for off, op, _ in instrs if op.startswith("HMMA")]
    holding = [lp for lp in loops if any(lp[0] <= h <= lp[1] for h in hmma_at)]
    result = []
    for lp in holding:
        inner = [o for o in holding if o != lp and lp[0] <= o[0] and o[1] <= lp[1]]
        if inner:
            continue
        body = [(off, op) for off, op, _ in instrs if lp[0] <= off <= lp[1] and op != "NOP"]
        hmma = [op for _, op in body if op.startswith("HMMA")]
        # 128-bit asynchronous copies (LDGSTS.E.BYPASS.128: cp.async 16 bytes): what tells a
        # kernel's main loops apart when it has one per load path (conv_gemm_bf16.cuh's 16-byte
        # weight loads vs its 4-byte ones, src/perf/mod.rs `main_loops_from_report`).
        ldgsts128 = len([op for _, op in body if op.startswith("LDGSTS") and op.split(".")[-1] == "128"])
        shapes = sorted({op.split(".")[1] for op in hmma})
        hidden = [o for o in loops if o != lp and lp[0] <= o[0] and o[1] <= lp[1]]
        hidden += [(c, c) for c in calls if lp[0] <= c <= lp[1]]
        # The smallest loop around it: where a K loop's loaders hide when the innermost HMMA loop
        # is only the unrolled-or-not k-step loop inside it (reported, not failed: a persistent
        # tile loop around a K loop legitimately holds epilogue loops too).
        around = [o for o in loops if o != lp and o[0] <= lp[0] and lp[1] <= o[1]]
        parent = min(around, key=lambda o: o[1] - o[0]) if around else None
        parent_loops = 0
        if parent:
            parent_loops = len([o for o in loops if o not in (lp, parent) and parent[0] <= o[0] and o[1] <= parent[1]
                                and not (lp[0] <= o[0] and o[1] <= lp[1])])
            parent_loops += len([c for c in calls if parent[0] <= c <= parent[1] and not lp[0] <= c <= lp[1]])
        result.append({
            "parent": parent, "parent_loops": parent_loops,
            "start": lp[0], "end": lp[1], "hmma": len(hmma), "other": len(body) - len(hmma),
            "shapes": shapes, "hidden": len(hidden), "ldgsts128": ldgsts128,
            "macs": sum(MMA_MACS.get(op.split(".")[1], 0) for op in hmma),
        })
    return result


def thresholds(path):
    rules = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            try:
                rules.append((parts[0], float(parts[1])))
            except (IndexError, ValueError):
                sys.stderr.write(f"kernel-report: {path}:{n}: expected `<kernel glob> <ratio>`, got {line!r}\n")
                sys.exit(2)
    return rules


def limit_for(kernel, rules):
    for pattern, ratio in rules:
        if fnmatch.fnmatchcase(kernel, pattern):
            return ratio
    return None


def main(argv):
    tsv = None
    if "--tsv" in argv:
        i = argv.index("--tsv")
        tsv = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    bindir, rules, fatbins = os.path.abspath(argv[0]), thresholds(argv[1]), argv[2:]
    cuobjdump, nvdisasm = os.path.join(bindir, "cuobjdump"), os.path.join(bindir, "nvdisasm")
    rows, failures = [], []
    for fatbin in fatbins:
        res = resources(cuobjdump, fatbin)
        with tempfile.TemporaryDirectory() as tmp:
            # -xelf writes into the current directory.
            p = subprocess.run([cuobjdump, "-xelf", "all", os.path.abspath(fatbin)], cwd=tmp,
                               capture_output=True, text=True)
            if p.returncode != 0:
                sys.stderr.write(f"kernel-report: cuobjdump -xelf {fatbin} failed:\n{p.stderr}")
                return 2
            for cubin in sorted(os.listdir(tmp)):
                arch = re.search(r"(sm_\d+)", cubin).group(1)
                code, labels = functions(run([nvdisasm, "-c", os.path.join(tmp, cubin)]))
                for kernel in sorted(code):
                    if kernel.startswith("$"):
                        continue  # device helpers (division routines): reported through CALLs
                    r = res.get((arch, kernel), {})
                    local = r.get("LOCAL", 0) + r.get("STACK", 0)
                    loops = main_loops(code[kernel], labels[kernel])
                    rows.append((os.path.basename(fatbin), arch, kernel, r.get("REG", -1), local,
                                 r.get("SHARED", -1), loops))
                    if local:
                        failures.append(f"{kernel} ({arch}): {local} bytes of local memory (spills or stack)")
                    limit = limit_for(kernel, rules)
                    for lp in loops:
                        ratio = lp["other"] / lp["hmma"]
                        lp["ratio"] = ratio
                        if lp["hidden"]:
                            failures.append(f"{kernel} ({arch}): {lp['hidden']} loop(s)/call(s) hide inside the "
                                            f"main loop at {lp['start']:#06x}")
                        if limit is not None and ratio > limit:
                            failures.append(f"{kernel} ({arch}): {ratio:.2f} other instructions per HMMA in the "
                                            f"main loop at {lp['start']:#06x}, threshold {limit}")
    print(f"{'kernel':<36} {'arch':<6} {'regs':>4} {'local':>5} {'shared':>6}  main loops: "
          "[offset] HMMA(shape) other ratio hidden (+loops beside it in the enclosing loop) "
          "{128-bit LDGSTS}")
    for fb, arch, kernel, reg, local, shared, loops in rows:
        desc = "; ".join(f"[{lp['start']:#06x}] {lp['hmma']}({'/'.join(lp['shapes'])}) {lp['other']} "
                         f"{lp['ratio']:.2f} {lp['hidden']}"
                         + (f" (+{lp['parent_loops']} around)" if lp["parent_loops"] else "")
                         + (f" {{{lp['ldgsts128']} LDGSTS.128}}" if lp["ldgsts128"] else "") for lp in loops) or "-"
        print(f"{kernel:<36} {arch:<6} {reg:>4} {local:>5} {shared:>6}  {desc}")
    if tsv:
        with open(tsv, "w") as f:
            # Columns are only ever appended (readers find them by name; older reports lack the
            # later ones). ldgsts128: the main loop's 128-bit LDGSTS (16-byte cp.async) count.
            f.write("# kernel-report: one row per main loop (or per kernel without one)\n")
            f.write("file\tarch\tkernel\tregs\tlocal_bytes\tshared_bytes\tloop_offset\thmma\t"
                    "hmma_shapes\tmacs_per_iteration\tother\tother_per_hmma\thidden_loops\tloops_beside\t"
                    "ldgsts128\n")
            for fb, arch, kernel, reg, local, shared, loops in rows:
                for lp in loops or [None]:
                    tail = ("-\t0\t-\t0\t0\t0\t0\t0\t0" if lp is None else
                            f"{lp['start']:#06x}\t{lp['hmma']}\t{'/'.join(lp['shapes'])}\t{lp['macs']}\t"
                            f"{lp['other']}\t{lp['ratio']:.3f}\t{lp['hidden']}\t{lp['parent_loops']}\t"
                            f"{lp['ldgsts128']}")
                    f.write(f"{fb}\t{arch}\t{kernel}\t{reg}\t{local}\t{shared}\t{tail}\n")
    if failures:
        print("\nFAIL:\n  " + "\n  ".join(failures))
        return 1
    print("\nOK: no spills, no hidden inner loops, every main loop within its threshold")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
