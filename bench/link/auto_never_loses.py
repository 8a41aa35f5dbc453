#!/usr/bin/env python3
"""Summary of bench/link/auto_never_loses.sh: per size, auto against MPI_Allreduce (same run)
and against the best fixed choice for its codec (dense = gradwire's `none` row, and each
`<codec>@<algorithm>` row), by the mean latency (the osu figure, vs_base) and by the median
(p50, less moved by other jobs' bursts; MPI_Allreduce's own median is not recorded, so the
`none` row, MPI_Allreduce through gradwire's communicator, stands for it). Usage: auto_never_loses.py OUT_DIR LINK..."""
import json
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def size_label(b):
    for unit, s in ((1 << 20, "MB"), (1 << 10, "KB")):
        if b >= unit:
            return f"{b // unit} {s}"
    return f"{b} B"


def main():
    out, links = sys.argv[1], sys.argv[2:]
    for link in links:
        recs = []
        for part in ("small", "large"):
            try:
                recs += rows(f"{out}/{link}-{part}.json")
            except FileNotFoundError:
                pass
        by_size = {}
        for r in recs:
            by_size.setdefault(r["size"], {})[r["codec"]] = r
        auto_codec = next((c for r in recs for c in [r["codec"]] if "@" not in c and c != "none"), None)
        print(f"\n## {link}\n")
        print("| Size | MPI_Allreduce (us) | auto (us) | auto chose | auto vs MPI | best fixed | best (us) | auto vs best | verdict | p50: auto vs dense | p50: auto vs best |")
        print("|---:|---:|---:|---|---:|---|---:|---:|---|---:|---:|")
        worst_mpi, worst_best = 9.9, 9.9
        worst_p50 = [9.9, 9.9]
        for size in sorted(by_size):
            row = by_size[size]
            a = row.get(auto_codec)
            if not a:
                continue
            fixed = {("dense" if c == "none" else c): r["avg_us"] for c, r in row.items() if c != auto_codec}
            p50 = {("dense" if c == "none" else c): r.get("p50_us") for c, r in row.items() if c != auto_codec}
            best = min(fixed, key=fixed.get)
            vs_mpi = a["base_us"] / a["avg_us"]
            vs_best = fixed[best] / a["avg_us"]
            worst_mpi, worst_best = min(worst_mpi, vs_mpi), min(worst_best, vs_best)
            ok = vs_mpi >= 0.97 and vs_best >= 0.95
            pb = min(v for v in p50.values() if v)
            p50_dense = p50.get("dense") / a["p50_us"] if p50.get("dense") and a.get("p50_us") else float("nan")
            p50_best = pb / a["p50_us"] if a.get("p50_us") else float("nan")
            worst_p50[0] = min(worst_p50[0], p50_dense)
            worst_p50[1] = min(worst_p50[1], p50_best)
            print(f"| {size_label(size)} | {a['base_us']:.1f} | {a['avg_us']:.1f} | {a['algorithm']} | "
                  f"{vs_mpi:.2f}x | {best} | {fixed[best]:.1f} | {vs_best:.2f}x | {'met' if ok else 'MISSED'} | "
                  f"{p50_dense:.2f}x | {p50_best:.2f}x |")
        print(f"\nWorst: auto vs MPI_Allreduce {worst_mpi:.2f}x (target >= 0.97x); auto vs the best fixed "
              f"choice {worst_best:.2f}x (target >= 0.95x). Medians (p50 of the calls): auto vs gradwire's "
              f"dense call (MPI_Allreduce underneath) {worst_p50[0]:.2f}x, auto vs the best fixed {worst_p50[1]:.2f}x.")


if __name__ == "__main__":
    main()
