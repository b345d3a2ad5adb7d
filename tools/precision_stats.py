#!/usr/bin/env python3
"""Compare the accuracy distributions of the precision study (examples/precision_study.rs).

Usage: precision_stats.py RESULTS.jsonl [--markdown]

For each GPU mode against fp32: n, mean ± std (ddof 1) of the best test accuracy, the difference
of means with Welch's t-test and the Mann-Whitney U test (two-sided), and, because every seed
trains the same subset, initialisation, shuffles and augmentations in every mode, the paired
differences (mean, std, Wilcoxon signed-rank). A mode "matches fp32" when neither two-sample test
rejects at ALPHA and the mean difference is within EQUIV_MARGIN (points of accuracy); the 95 %
confidence interval of the paired difference says how large a shift the data can still hide.
Needs scipy (tools/precision_stats.py runs in any Python with numpy + scipy).
"""

import json
import sys
from collections import defaultdict

import numpy as np
from scipy import stats

ALPHA = 0.05
# Differences of mean accuracy below half a point are inside DD-Ranking's own run-to-run noise
# (a random IPC-10 subset moves accuracy by ~1-2 points); a mode must stay within it.
EQUIV_MARGIN = 0.5
ORDER = ["fp32", "3xtf32", "tf32", "bf16"]


def main(argv):
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    by_mode = defaultdict(dict)
    recipe = None
    with open(argv[0]) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                by_mode[r["mode"]][r["seed"]] = 100.0 * r["best"]
            except (ValueError, KeyError) as e:
                sys.stderr.write(f"{argv[0]}:{n}: not a study record ({e})\n")
                return 2
            recipe = {k: r.get(k) for k in ("ipc", "width", "epochs", "test_interval", "test_images", "lr")}
    if "fp32" not in by_mode:
        sys.stderr.write(f"{argv[0]}: no fp32 rows to compare against\n")
        return 2
    base = by_mode["fp32"]
    print(f"recipe: {recipe}")
    print("| mode | n | accuracy % mean ± std | Δ mean vs fp32 | Welch t p | Mann-Whitney p | "
          "paired Δ mean ± std (n) | paired Δ 95 % CI | Wilcoxon p | matches fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in [m for m in ORDER if m in by_mode] + sorted(set(by_mode) - set(ORDER)):
        acc = np.array(sorted(by_mode[mode].values()))
        row = f"| {mode} | {len(acc)} | {acc.mean():.2f} ± {acc.std(ddof=1):.2f} |"
        if mode == "fp32":
            print(row + " — | — | — | — | — | — | — |")
            continue
        b = np.array(list(base.values()))
        welch = stats.ttest_ind(acc, b, equal_var=False).pvalue
        mw = stats.mannwhitneyu(acc, b, alternative="two-sided").pvalue
        common = sorted(set(by_mode[mode]) & set(base))
        d = np.array([by_mode[mode][s] - base[s] for s in common])
        wil = stats.wilcoxon(d).pvalue if len(d) and np.any(d != 0) else 1.0
        dm = acc.mean() - b.mean()
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        ok = welch >= ALPHA and mw >= ALPHA and abs(dm) <= EQUIV_MARGIN
        print(row + f" {dm:+.2f} | {welch:.3f} | {mw:.3f} | {d.mean():+.2f} ± {d.std(ddof=1):.2f} ({len(d)}) "
              f"| [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}] | {wil:.3f} | {'yes' if ok else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
