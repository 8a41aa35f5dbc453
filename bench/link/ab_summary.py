#!/usr/bin/env python3
"""Summary of gw_allreduce runs of several builds taken in turn (usage: ab_summary.py DIR...).

Each DIR holds <build>-np<P>-rep<R>.json, one `gw_allreduce ... --json` run each. Per rank
count, codec row and build: the cells (size, repetition), the median and geometric mean of
the cells' ratios to MPI_Allreduce timed in the same run (by the median over calls), the
worst cell, how many cells fall below 0.97x, and the algorithm each cell ended on."""
import collections
import glob
import json
import os
import re
import statistics
import sys


def main():
    cells = collections.defaultdict(list)  # (np, codec, build) -> [(ratio, size, algorithm)]
    for d in sys.argv[1:]:
        for path in glob.glob(os.path.join(d, "*-np*-rep*.json")):
            build, np_ = re.match(r"(.+)-np(\d+)-rep\d+\.json", os.path.basename(path)).groups()
            with open(path) as f:
                for line in f:
                    r = json.loads(line)
                    if r["codec"] == "none":
                        continue
                    cells[(int(np_), r["codec"], build)].append(
                        (r["base_p50_us"] / r["p50_us"], r["size"], r["algorithm"]))
    print("| ranks | row | build | cells | median | geomean | worst | below 0.97x | ended on |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---|")
    for (np_, codec, build), v in sorted(cells.items()):
        ratios = [c[0] for c in v]
        ran = collections.Counter(c[2] for c in v)
        print(f"| {np_} | {codec} | {build} | {len(v)} | {statistics.median(ratios):.3f}x | "
              f"{statistics.geometric_mean(ratios):.3f}x | {min(ratios):.2f}x | "
              f"{sum(x < 0.97 for x in ratios)} | "
              f"{', '.join(f'{a} {n}' for a, n in ran.most_common())} |")


if __name__ == "__main__":
    main()
