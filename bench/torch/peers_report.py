"""Markdown tables and a PNG plot from bench/torch/ddp_throughput.sh's JSON (host.json,
1gbit.json) and, when present, bench/torch/time_to_accuracy.sh's (time-to-accuracy.json).
Usage: python peers_report.py DIR [PLOT.png]   (prints the markdown; writes the plot)"""
import json
import os
import sys

LINKS = [("host", "unshaped host"), ("1gbit", "1 Gbit/s link")]


def load(directory, name):
    path = os.path.join(directory, name)
    return json.load(open(path)) if os.path.exists(path) else None


def mb(v):
    return f"{v / 1e6:.2f}"


def throughput_tables(runs):
    out = []
    models = next(iter(runs.values()))["models"]
    for mname, first in models.items():
        out.append(f"### {mname}: {first['parameters'] / 1e6:.2f} M parameters, "
                   f"{first['batch_per_rank']} per rank ({first['samples_per_step']} samples "
                   "per step over 4 ranks)\n")
        head = "| row | algorithm that ran |"
        rule = "|---|---|"
        for link, title in LINKS:
            if link in runs:
                head += f" {title}: median s | p95 s | samples/s | × DDP | MB/step/rank |"
                rule += "---:|---:|---:|---:|---:|"
        head += " MB/step/rank measured on the link |"
        rule += "---:|"
        out += [head, rule]
        line = "| compute only (no communication) | – |"
        for link, _ in LINKS:
            if link in runs:
                c = runs[link]["models"][mname]["compute_only"]
                line += (f" {c['median_s']:.3f} | {c['p95_s']:.3f} | {c['samples_per_s']:.1f} | "
                         "| 0 |")
        out.append(line + " |")
        for row in first["rows"]:
            algos = sorted({runs[link]["models"][mname]["rows"][row]["algorithm"]
                            for link, _ in LINKS if link in runs})
            line = f"| {row} | {' / '.join(algos)} |"
            for link, _ in LINKS:
                if link not in runs:
                    continue
                m = runs[link]["models"][mname]["rows"]
                r, base = m[row], m["ddp-allreduce"]
                line += (f" {r['median_s']:.3f} | {r['p95_s']:.3f} | {r['samples_per_s']:.1f} | "
                         f"{r['samples_per_s'] / base['samples_per_s']:.2f} | "
                         f"{mb(r['wire_bytes_per_step'])} |")
            shaped = runs.get("1gbit", {}).get("models", {}).get(mname, {}).get("rows", {})
            measured = mb(shaped[row]["lo_bytes_per_rank_step"]) if row in shaped else ""
            out.append(line + f" {measured} |")
        out.append("")
    return "\n".join(out)


def plan_table(runs, link, model):
    """gradwire rows: where a step's time goes, from the plans' statistics (the last step's
    run of each bucket's plan; the seconds of buckets in flight together overlap)."""
    m = runs[link]["models"][model]
    out = [f"| row | buckets | Σ encode s | Σ transfer s | Σ decode s | Σ plan run s | "
           f"step median s | step − compute-only s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row, r in m["rows"].items():
        if "buckets" not in r:
            continue
        b = r["buckets"]

        def total(key):
            return sum(x.get(key) or 0 for x in b)
        if all(x.get("whole_bucket") for x in b):  # the hook ran no plan: one allreduce each
            out.append(f"| {row} ({r['algorithm']}) | {len(b)} | whole buckets through one "
                       f"allreduce each, no plan run ||| | {r['median_s']:.3f} | "
                       f"{r['median_s'] - m['compute_only']['median_s']:.3f} |")
            continue
        out.append(f"| {row} ({r['algorithm']}) | {len(b)} | {total('encode_s'):.3f} | "
                   f"{total('transfer_s'):.3f} | {total('decode_s'):.3f} | "
                   f"{total('total_s'):.3f} | {r['median_s']:.3f} | "
                   f"{r['median_s'] - m['compute_only']['median_s']:.3f} |")
    return "\n".join(out)


def ratio(runs, link, model, a, b):
    m = runs[link]["models"][model]["rows"]
    return m[a]["samples_per_s"] / m[b]["samples_per_s"]


def targets(runs):
    out = ["| target | measured | met |", "|---|---:|---|"]
    big = "transformer"
    if "1gbit" in runs and big in runs["1gbit"]["models"]:
        for a, b, want in (("gw-q8", "ddp-allreduce", 2.5), ("gw-q8", "torch-fp16", 1.6),
                           ("gw-powersgd-r4", "torch-powersgd-r4", 1.0)):
            v = ratio(runs, "1gbit", big, a, b)
            out.append(f"| 1 Gbit/s, {big}: {a} ≥ {want}× {b} | {v:.2f}× | "
                       f"{'yes' if v >= want else '**no**'} |")
    if "host" in runs:
        for model in runs["host"]["models"]:
            v = ratio(runs, "host", model, "gw-auto", "ddp-allreduce")
            ran = runs["host"]["models"][model]["rows"]["gw-auto"]["algorithm"]
            out.append(f"| host, {model}: gw-auto ({ran}) ≥ 0.97× ddp-allreduce | {v:.2f}× | "
                       f"{'yes' if v >= 0.97 else '**no**'} |")
    return "\n".join(out)


def plot(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = list(next(iter(runs.values()))["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 5.5))
    axes = axes if len(models) > 1 else [axes]
    for ax, mname in zip(axes, models):
        rows = list(next(iter(runs.values()))["models"][mname]["rows"])
        width = 0.8 / len(runs)
        for i, (link, title) in enumerate(l for l in LINKS if l[0] in runs):
            m = runs[link]["models"][mname]
            ys = [j + i * width for j in range(len(rows))]
            bars = ax.barh(ys, [m["rows"][r]["samples_per_s"] for r in rows], height=width,
                           label=title)
            ax.axvline(m["compute_only"]["samples_per_s"], ls="--", lw=1,
                       color=bars.patches[0].get_facecolor(),
                       label=f"compute only ({title})")
        ax.set_yticks([j + 0.4 - width / 2 for j in range(len(rows))])
        ax.set_yticklabels(rows)
        ax.invert_yaxis()
        ax.set_xlabel("samples/s (4 ranks, median step)")
        ax.set_title(f"{mname} ({m['parameters'] / 1e6:.1f} M parameters)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def tta_table(tta):
    seeds = list(tta["seeds"])
    rows = list(tta["seeds"][seeds[0]])
    targets = {s: tta["seeds"][s]["ddp-allreduce"]["curve"][-1][2] for s in seeds}
    hits = {}  # row -> per seed the first (seconds, step, accuracy) at or above the target
    for row in rows:
        hits[row] = [next((c for c in tta["seeds"][s][row]["curve"] if c[2] >= targets[s]), None)
                     for s in seeds]

    def mean_s(row):
        return None if None in hits[row] else sum(h[0] for h in hits[row]) / len(seeds)

    base = mean_s("ddp-allreduce")
    out = ["Targets (DDP's accuracy after its last step): " + ", ".join(
        f"seed {s} {t:.2f} %" for s, t in targets.items()) + "\n",
        "| row | algorithm that ran |" + "".join(
            f" seed {s}: s to target | final % |" for s in seeds) + " DDP's time / row's |",
        "|---|---|" + "---:|---:|" * len(seeds) + "---:|"]
    for row in rows:
        line = f"| {row} | {tta['seeds'][seeds[0]][row]['algorithm']} |"
        for s, hit in zip(seeds, hits[row]):
            curve = tta["seeds"][s][row]["curve"]
            if hit:
                line += f" {hit[0]:.1f} (step {hit[1]}) | {curve[-1][2]:.2f} |"
            else:
                line += f" never (best {max(c[2] for c in curve):.2f}) | {curve[-1][2]:.2f} |"
        m = mean_s(row)
        out.append(line + (f" {base / m:.2f} |" if base and m else " – |"))
    return "\n".join(out)


def main():
    directory = sys.argv[1]
    runs = {link: r for link, _ in LINKS if (r := load(directory, f"{link}.json"))}
    for link, title in LINKS:
        if link in runs:
            r = runs[link]
            lc = ", ".join(f"{k} {v['seconds']:.3f} s ({v['link_gbit_s']:.2f} Gbit/s)"
                           for k, v in r["link_check"].items())
            print(f"- {title}: started {r['started']}, load {r['load_start'][0]:.1f} → "
                  f"{r['load_end'][0]:.1f}; PyTorch {r['torch']}, backend {r['backend']}; "
                  f"dense 16 MiB allreduce: {lc}")
    print()
    print(throughput_tables(runs))
    print(targets(runs))
    for link, title in LINKS:
        for model in runs.get(link, {}).get("models", {}):
            print(f"\ngradwire's plans, {model}, {title}:\n")
            print(plan_table(runs, link, model))
    if len(sys.argv) > 2:
        plot(runs, sys.argv[2])
    tta = load(directory, "time-to-accuracy.json")
    if tta:
        print()
        print(tta_table(tta))


if __name__ == "__main__":
    main()
