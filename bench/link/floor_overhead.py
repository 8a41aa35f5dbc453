#!/usr/bin/env python3
"""Summary of long gw_allreduce rows of two builds (usage: floor_overhead.py DIR).

DIR holds <build>-np<P>-rep<R>.json, each one run of
`gw_allreduce -m 8:2K -i 20000 -x 1000 -T float -f --codec q8` (auto runs dense at its floor
there). Per rank count and build: the median over (size, repetition) cells of auto's ratio to
MPI_Allreduce timed in the same run (by the median over calls, and paired over rounds), the
worst cell, and how many cells reach 0.97x."""
import glob
import json
import os
import re
import statistics
import sys


def main():
    cells = {}  # (np, build) -> [(p50 ratio, paired ratio, algorithm)]
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*-np*-rep*.json"))):
        build, np_ = re.match(r"(.+)-np(\d+)-rep\d+\.json", os.path.basename(path)).groups()
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r["codec"] == "q8":
                    cells.setdefault((int(np_), build), []).append(
                        (r["base_p50_us"] / r["p50_us"], r["paired_vs_base"], r["algorithm"]))
    print("| ranks | build | cells | auto ran | median of p50 ratios | worst | >= 0.97x | median paired |")
    print("|---:|---|---:|---|---:|---:|---:|---:|")
    for (np_, build), v in sorted(cells.items()):
        p50 = [c[0] for c in v]
        print(f"| {np_} | {build} | {len(v)} | {', '.join(sorted({c[2] for c in v}))} | "
              f"{statistics.median(p50):.3f}x | {min(p50):.3f}x | {sum(x >= 0.97 for x in p50)} | "
              f"{statistics.median(c[1] for c in v):.3f}x |")


if __name__ == "__main__":
    main()
