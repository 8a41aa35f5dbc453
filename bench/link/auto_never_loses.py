#!/usr/bin/env python3
"""Summary of bench/link/auto_never_loses.sh (usage: auto_never_loses.py OUT_DIR).

Host files (host-np<P>-run<R>-*.json): per rank count, codec and size, `auto` against
MPI_Allreduce timed in the same run (the blocks beside each row), by the median over the run's
calls (p50 / base_p50), in each run, with the paired ratio (median over rounds of the mean of
MPI_Allreduce's two blocks beside auto's / auto's) where the median ratio misses 0.97; and what
auto ran (algorithm, switches).
The `control` rows (gw_allreduce --control) are MPI_Allreduce timed again as if it were a
codec: where a control cell misses 0.97 too, noise alone crosses the line there.
Link files (<rate>-np4.json): auto against the best fixed choice for its codec (by mean and
by median), target within 5 %."""
import glob
import json
import os
import re
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def size_label(b):
    for unit, s in ((1 << 20, "MB"), (1 << 10, "KB")):
        if b >= unit:
            return f"{b // unit} {s}"
    return f"{b} B"


def host(out):
    runs = {}  # (np, codec) -> size -> [record per run]
    plain = {}  # (np, size, run) -> gradwire's dense call (the `none` row) against MPI_Allreduce
    for path in sorted(glob.glob(os.path.join(out, "host-np*-run*-*.json"))):
        m = re.search(r"host-np(\d+)-run(\d+)-", path)
        recs = rows(path)
        none = {r["size"]: r for r in recs if r["codec"] == "none"}
        for size, r in none.items():
            if r.get("p50_us") and r.get("base_p50_us"):
                plain[(int(m.group(1)), size, int(m.group(2)))] = r["base_p50_us"] / r["p50_us"]
        for r in recs:
            if r["codec"] == "none":
                continue
            if r["size"] in none and none[r["size"]].get("p50_us") and r.get("p50_us"):
                r["vs_none_p50"] = none[r["size"]]["p50_us"] / r["p50_us"]
            runs.setdefault((int(m.group(1)), r["codec"]), {}).setdefault(r["size"], {})[int(m.group(2))] = r
    misses = []
    for (np_, codec), by_size in sorted(runs.items()):
        nruns = max(len(v) for v in by_size.values())
        what = "MPI_Allreduce against itself (control)" if codec == "control" else f"`{codec}` under auto"
        print(f"\n### host, {np_} ranks, {what}\n")
        head = " | ".join(f"run {i} p50 ratio | ran" for i in range(1, nruns + 1))
        print(f"| Size | {head} |")
        print("|---:|" + "---:|---|" * nruns)
        for size in sorted(by_size):
            cells = []
            for i in range(1, nruns + 1):
                r = by_size[size].get(i)
                if not r or not r.get("p50_us") or not r.get("base_p50_us"):
                    cells += ["", ""]
                    continue
                ratio = r["base_p50_us"] / r["p50_us"]
                paired = r.get("paired_vs_base")
                cell = f"{ratio:.2f}x"
                if ratio < 0.97:
                    cell = f"**{ratio:.2f}x** (paired {paired:.2f}x)" if paired else f"**{ratio:.2f}x**"
                    misses.append((np_, codec, size, i, ratio, paired, r["algorithm"]))
                ran = r["algorithm"] + (f" ({r['switches']} sw)" if r.get("switches") else "")
                cells += [cell, ran]
            print(f"| {size_label(size)} | " + " | ".join(cells) + " |")
    print("\n### host summary: sizes at >= 0.97x of MPI_Allreduce by the median / by the paired ratio,"
          " of all sizes; what auto ran at the end of each row\n")
    print("| ranks | codec | run | >= 0.97x (median) | >= 0.97x (paired) | worst median | median of the sizes' medians | vs gradwire dense call (median of sizes) | ran compressed at | switches |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for (np_, codec), by_size in sorted(runs.items()):
        for i in sorted({k for v in by_size.values() for k in v}):
            cells = [by_size[z][i] for z in sorted(by_size) if i in by_size[z]]
            med = [c["base_p50_us"] / c["p50_us"] for c in cells if c.get("p50_us") and c.get("base_p50_us")]
            pair = [c["paired_vs_base"] for c in cells if c.get("paired_vs_base")]
            comp = [size_label(c["size"]) for c in cells if c["algorithm"] not in ("dense", "MPI_Allreduce")]
            sw = sum(c.get("switches", 0) for c in cells)
            vn = sorted(c["vs_none_p50"] for c in cells if c.get("vs_none_p50"))
            ms = sorted(med)
            print(f"| {np_} | {codec} | {i} | {sum(x >= 0.97 for x in med)}/{len(med)} | "
                  f"{sum(x >= 0.97 for x in pair)}/{len(pair)} | {min(med):.2f}x | {ms[len(ms) // 2]:.2f}x | "
                  f"{vn[len(vn) // 2] if vn else float('nan'):.2f}x | "
                  f"{', '.join(comp) or '-'} | {sw} |")
    # Where the misses are, for auto (every codec) and for the control, per rank count.
    regions = (("below 4 KiB", 0, 4096), ("4 KiB-512 KiB", 4096, 1 << 20), ("1-128 MB", 1 << 20, 1 << 40))
    # gradwire's own dense call pays the same per-call bookkeeping (watchdog, progress board)
    # that auto's dense runs do: where it misses too, that cost is what crosses the line.
    print("\n### host: cells below 0.97x by the median, auto against the control and gradwire's"
          " dense call\n")
    print("| ranks | sizes | auto (q8, q4, top-k) | control | gradwire dense call |")
    print("|---:|---|---:|---:|---:|")
    for np_ in sorted({k[0] for k in runs}):
        for name, lo, hi in regions:
            def count(want_control):
                cells = [(c, z, i) for (n, c), by_size in runs.items() if n == np_ and (c == "control") == want_control
                         for z, per_run in by_size.items() if lo <= z < hi for i in per_run]
                bad = [m for m in misses if m[0] == np_ and (m[1] == "control") == want_control and lo <= m[2] < hi]
                return f"{len(bad)}/{len(cells)}"
            dense = [v for (n, z, _), v in plain.items() if n == np_ and lo <= z < hi]
            print(f"| {np_} | {name} | {count(False)} | {count(True)} | "
                  f"{sum(v < 0.97 for v in dense)}/{len(dense)} |")
    # The typical cell of each region: the median of its cells' p50 ratios.
    # The typical cell by the median over calls (what the target counts) and by the mean (what
    # a job's total time sees: a probe's or an agreement's slow runs weigh there).
    for what, base_key, key in (("p50 ratios", "base_p50_us", "p50_us"),
                                ("mean ratios", "base_us", "avg_us")):
        print(f"\n### host: the typical cell (median of the cells' {what}), auto / control\n")
        print("| ranks | " + " | ".join(name for name, *_ in regions) + " |")
        print("|---:|" + "---|" * len(regions))
        for np_ in sorted({k[0] for k in runs}):
            def typical(want_control, lo, hi):
                v = sorted(c[base_key] / c[key] for (n, codec), by_size in runs.items()
                           if n == np_ and (codec == "control") == want_control
                           for z, per_run in by_size.items() if lo <= z < hi
                           for c in per_run.values() if c.get(key) and c.get(base_key))
                return f"{v[len(v) // 2]:.3f}x" if v else "-"
            print(f"| {np_} | " + " | ".join(f"{typical(False, lo, hi)} / {typical(True, lo, hi)}"
                                             for _, lo, hi in regions) + " |")
    noise = {(np_, size, i) for np_, codec, size, i, *_ in misses if codec == "control"}
    auto = [m for m in misses if m[1] != "control"]
    print(f"\nHost: {len(auto)} (ranks, codec, size, run) cells of auto below 0.97x by the median; "
          f"the control (MPI_Allreduce against itself) misses in {len(noise)} (ranks, size, run):")
    for np_, codec, size, i, ratio, paired, algo in misses:
        also = " (the control misses here too)" if codec != "control" and (np_, size, i) in noise else ""
        print(f"- {np_} ranks {codec} {size_label(size)} run {i}: {ratio:.2f}x by median, paired "
              f"{paired if paired is None else f'{paired:.2f}x'}, ran {algo}{also}")


def link(out):
    for path in sorted(glob.glob(os.path.join(out, "*-np4.json"))):
        recs = rows(path)
        name = os.path.basename(path)[:-5]
        auto_codec = next(r["codec"] for r in recs if "@" not in r["codec"] and r["codec"] != "none")
        by_size = {}
        for r in recs:
            by_size.setdefault(r["size"], {})[r["codec"]] = r
        print(f"\n### {name}: `{auto_codec}` under auto against every fixed choice\n")
        print("| Size | auto ran | auto (us) | best fixed | best (us) | auto vs best | p50: auto vs best | paired vs MPI |")
        print("|---:|---|---:|---|---:|---:|---:|---:|")
        for size in sorted(by_size):
            row = by_size[size]
            a = row.get(auto_codec)
            if not a:
                continue
            fixed = {("dense" if c == "none" else c): r for c, r in row.items() if c != auto_codec}
            best = min(fixed, key=lambda c: fixed[c]["avg_us"])
            bp50 = min(r["p50_us"] for r in fixed.values())
            vs = fixed[best]["avg_us"] / a["avg_us"]
            print(f"| {size_label(size)} | {a['algorithm']} ({a.get('switches', 0)} sw) | {a['avg_us']:.0f} | "
                  f"{best} | {fixed[best]['avg_us']:.0f} | {vs:.2f}x | {bp50 / a['p50_us']:.2f}x | "
                  f"{a.get('paired_vs_base') or float('nan'):.2f}x |")


def main():
    out = sys.argv[1]
    host(out)
    link(out)


if __name__ == "__main__":
    main()
