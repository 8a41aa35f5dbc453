#!/usr/bin/env python3
"""Where the time went, from a gradwire timeline (docs/timeline.md).

Prints, per rank, the share of recorded time in each stage (self time: a span's own time less
the spans nested in it), the slowest rank of each call (the one that arrived last, which the
others waited for), and draws a PNG of stacked bars per rank.

Usage: timeline_summary.py TRACE.json [TRACE.json.rank1.json ...] [--png OUT.png]
                           [--title TEXT] [--calls N]
"""
import argparse
import collections
import json
import sys

# What each span's self time counts as. Spans on a plan's track nest as
# run > stage k > (encode | decode | exchange > decode); track 0 holds dense collectives.
CATEGORIES = ["encode", "decode", "wait (exchange)", "local work", "plan overhead", "dense collective"]
COLORS = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd"]


def category(e):
    n = e["name"]
    if e["tid"] == 0 and not n.startswith("run "):
        return "dense collective"
    if n == "encode":
        return "encode"
    if n == "decode":
        return "decode"
    if n == "exchange":
        return "wait (exchange)"
    if n.startswith("stage"):
        return "local work"
    if n.startswith("run "):
        return "plan overhead"
    return "local work"


def load(paths):
    events = []
    for p in paths:
        with open(p) as f:
            doc = json.load(f)
        events.extend(doc["traceEvents"] if isinstance(doc, dict) else doc)
    return events


def self_times(spans):
    """Self time of each span of one track, by nesting (spans sorted by start, longest first)."""
    spans = sorted(spans, key=lambda e: (e["ts"], -e["dur"]))
    own = [e["dur"] for e in spans]
    stack = []
    for i, e in enumerate(spans):
        while stack and spans[stack[-1]]["ts"] + spans[stack[-1]]["dur"] < e["ts"] + e["dur"] - 1e-3:
            stack.pop()
        if stack:
            own[stack[-1]] -= e["dur"]
        stack.append(i)
    return list(zip(spans, own))


def summarize(events):
    spans = [e for e in events if e.get("ph") == "X"]
    tracks = collections.defaultdict(list)
    for e in spans:
        tracks[(e["pid"], e["tid"])].append(e)
    share = collections.defaultdict(lambda: collections.Counter())
    for (pid, _), evs in tracks.items():
        for e, own in self_times(evs):
            share[pid][category(e)] += max(own, 0.0)
    # Calls matched across ranks: plan runs by (track, step), dense calls by their order.
    calls = collections.defaultdict(dict)
    order = collections.Counter()
    for e in sorted(spans, key=lambda e: e["ts"]):
        if e["name"].startswith("run "):
            key = (e["name"], e["tid"], e["args"].get("n", -1))
        elif e["tid"] == 0:
            order[(e["pid"], e["name"])] += 1
            key = (e["name"], 0, order[(e["pid"], e["name"])])
        else:
            continue
        calls[key][e["pid"]] = e
    return share, calls


def report(share, calls, ncalls):
    ranks = sorted(share)
    print("Share of recorded time per stage (self time), per rank")
    head = f"{'rank':>4} {'total ms':>10} " + " ".join(f"{c:>17}" for c in CATEGORIES)
    print(head)
    for r in ranks:
        total = sum(share[r].values())
        cells = " ".join(f"{100 * share[r][c] / total if total else 0:16.1f}%" for c in CATEGORIES)
        print(f"{r:>4} {total / 1e3:10.2f} {cells}")
    print()
    late = collections.Counter()
    rows = []
    for key, per in calls.items():
        if len(per) < 2:
            continue
        last = max(per, key=lambda p: per[p]["ts"])
        spread = per[last]["ts"] - min(e["ts"] for e in per.values())
        late[last] += 1
        rows.append((spread, key, last, per))
    print(f"Slowest rank per call (the last to arrive; others waited): {len(rows)} calls")
    for r in ranks:
        print(f"  rank {r}: last in {late[r]} calls")
    rows.sort(key=lambda x: -x[0])
    if rows:
        print(f"Calls with the longest wait for the last rank (top {ncalls}):")
        print(f"  {'call':<48} {'step':>6} {'last rank':>9} {'waited ms':>10} {'longest ms':>10}")
        for spread, key, last, per in rows[:ncalls]:
            longest = max(e["dur"] for e in per.values())
            print(f"  {key[0][:48]:<48} {key[2]:>6} {last:>9} {spread / 1e3:10.2f} {longest / 1e3:10.2f}")


def draw(share, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ranks = sorted(share)
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(ranks) + 2.2))
    left = [0.0] * len(ranks)
    for c, color in zip(CATEGORIES, COLORS):
        widths = [share[r][c] / 1e3 for r in ranks]
        ax.barh([f"rank {r}" for r in ranks], widths, left=left, color=color, label=c)
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.set_xlabel("recorded time (ms, self time of each stage)")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--png")
    ap.add_argument("--title", default="gradwire timeline: time per stage per rank")
    ap.add_argument("--calls", type=int, default=10)
    a = ap.parse_args()
    share, calls = summarize(load(a.traces))
    if not share:
        sys.exit("timeline_summary: no spans in " + ", ".join(a.traces))
    report(share, calls, a.calls)
    if a.png:
        draw(share, a.png, a.title)


if __name__ == "__main__":
    main()
