#!/usr/bin/env python3
"""Unit tests of tools/kernel_report.py's SASS reading, on hand-written nvdisasm listings (no
CUDA tools needed): `python3 tools/kernel_report_test.py` (.ci/run runs it before the report).

The listings mimic `nvdisasm -c` output: a `.text.<kernel>:` section, `.L_x_N:` labels, and
instructions as `/*offset*/ OPCODE operands ;`.
"""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernel_report  # noqa: E402


def listing(kernel, loops):
    """A kernel whose main loops each hold `body` (a list of opcodes) and close with a backward
    BRA; loops are laid out one after another, 16 bytes per instruction."""
    lines, off = [f".text.{kernel}:"], 0
    for n, body in enumerate(loops):
        lines.append(f".L_x_{n}:")
        for op in body:
            lines.append(f"        /*{off:04x}*/                   {op} R0, R1 ;")
            off += 16
        lines.append(f"        /*{off:04x}*/                   @P0 BRA `(.L_x_{n}) ;")
        off += 16
    lines.append(f"        /*{off:04x}*/                   EXIT ;")
    return "\n".join(lines) + "\n"


# The two main loops of conv3x3_forward_bf16 in miniature: the 16-byte weight path (128-bit
# LDGSTS for B beside 4-byte ones for A) and the 4-byte path (only 4-byte LDGSTS).
WIDE = ["LDGSTS.E.BYPASS.128", "LDGSTS.E.BYPASS.128", "LDGSTS.E.LTC128B", "HMMA.16816.F32.BF16",
        "HMMA.16816.F32.BF16", "IMAD.WIDE"]
NARROW = ["LDGSTS.E.LTC128B", "LDGSTS.E", "LDGSTS.E", "LDGSTS.E", "HMMA.16816.F32.BF16",
          "HMMA.16816.F32.BF16", "IADD3", "IMAD.WIDE"]


class MainLoops(unittest.TestCase):
    def loops(self, text, kernel):
        code, labels = kernel_report.functions(text)
        return kernel_report.main_loops(code[kernel], labels[kernel])

    def test_128_bit_copies_are_counted_per_loop(self):
        loops = self.loops(listing("k", [WIDE, NARROW]), "k")
        self.assertEqual([lp["ldgsts128"] for lp in loops], [2, 0])
        # LTC128B (an L2 prefetch hint) is not a 128-bit copy; the loop-closing BRA counts as other.
        self.assertEqual([(lp["hmma"], lp["other"]) for lp in loops], [(2, 5), (2, 7)])

    def test_tsv_appends_the_column_and_keeps_the_old_ones(self):
        with tempfile.TemporaryDirectory() as tmp:
            bindir = os.path.join(tmp, "bin")
            os.mkdir(bindir)
            sass = listing("conv3x3_forward_bf16", [WIDE, NARROW])
            # Stand-ins for cuobjdump and nvdisasm: one sm_90 cubin whose listing is `sass`.
            with open(os.path.join(bindir, "cuobjdump"), "w") as f:
                f.write("#!/bin/sh\n"
                        "if [ \"$1\" = -res-usage ]; then\n"
                        "  echo 'arch = sm_90'\n"
                        "  echo '  Function conv3x3_forward_bf16:'\n"
                        "  echo '    REG:200 STACK:0 SHARED:1024 LOCAL:0'\n"
                        "else\n"
                        "  : > x.sm_90.cubin\n"
                        "fi\n")
            with open(os.path.join(bindir, "nvdisasm"), "w") as f:
                f.write("#!/bin/sh\ncat <<'EOF'\n" + sass + "EOF\n")
            for tool in ("cuobjdump", "nvdisasm"):
                os.chmod(os.path.join(bindir, tool), 0o755)
            rules = os.path.join(tmp, "thresholds.txt")
            with open(rules, "w") as f:
                f.write("conv3x3_*_bf16 5.0\n")
            fatbin = os.path.join(tmp, "conv_bf16.fatbin")
            open(fatbin, "w").close()
            tsv = os.path.join(tmp, "r.tsv")
            p = subprocess.run([sys.executable, kernel_report.__file__, bindir, rules, fatbin,
                                "--tsv", tsv], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            rows = [l.split("\t") for l in open(tsv).read().splitlines() if not l.startswith("#")]
            header, body = rows[0], rows[1:]
            # Old columns keep their places; the new one is last.
            self.assertEqual(header[:14], ["file", "arch", "kernel", "regs", "local_bytes",
                                           "shared_bytes", "loop_offset", "hmma", "hmma_shapes",
                                           "macs_per_iteration", "other", "other_per_hmma",
                                           "hidden_loops", "loops_beside"])
            self.assertEqual(header[14:], ["ldgsts128"])
            self.assertEqual([(r[2], r[11], r[14]) for r in body],
                             [("conv3x3_forward_bf16", "2.500", "2"),
                              ("conv3x3_forward_bf16", "3.500", "0")])


if __name__ == "__main__":
    unittest.main()
