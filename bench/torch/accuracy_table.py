"""Markdown table from bench/torch/fashion_mnist_accuracy.sh's logs (seed<N>.log): test
accuracy per config and seed, the mean, its difference from DDP's default allreduce (the mean
of per-seed differences), the target and the algorithm the plans ran.
Usage: python accuracy_table.py LOG_DIR"""
import os
import re
import sys

TARGETS = {"q8": 0.2, "q4": 0.2, "topk-dgc": 0.3, "powersgd-r4": 0.5}
directory = sys.argv[1]
acc, algo = {}, {}
for name in sorted(os.listdir(directory)):
    m = re.fullmatch(r"seed(\d+)\.log", name)
    if not m:
        continue
    seed, config = int(m.group(1)), None
    for line in open(os.path.join(directory, name)):
        if line.startswith("config "):
            fields = line.split()
            config = fields[1]
            if "seed" in fields:  # a launch that ran several seeds
                seed = int(fields[fields.index("seed") + 1])
        elif line.startswith("epoch ") and config:
            fields = line.split()
            acc.setdefault(config, {})[seed] = float(fields[fields.index("test_accuracy") + 1])
            if not config.startswith("torch-"):  # PyTorch's hooks: their own "hook" line
                algo.setdefault(config, set()).add(fields[fields.index("algorithm") + 1])
        elif line.startswith("hook ") and config:
            algo.setdefault(config, set()).add(line.split()[1])
seeds = sorted({s for v in acc.values() for s in v})
print("| config | algorithm that ran | " + " | ".join(f"seed {s}" for s in seeds) +
      " | mean | Δ vs DDP (mean of per-seed Δ) | target | met |")
print("|---|---|" + "---|" * len(seeds) + "---|---|---|---|")
base = acc.get("ddp", {})
for config in ["ddp", "q8", "q4", "topk-dgc", "powersgd-r4", "torch-powersgd-r4"]:
    if config not in acc:
        continue
    row = acc[config]
    cells = [f"{row[s]:.2f}" if s in row else "–" for s in seeds]
    mean = sum(row.values()) / len(row)
    common = [s for s in row if s in base]
    if config == "ddp" or not common:
        delta, target, met = "", "", ""
    else:
        d = sum(row[s] - base[s] for s in common) / len(common)
        delta = f"{d:+.2f} (seeds {','.join(map(str, common))})"
        target = f"within {TARGETS[config]}" if config in TARGETS else ""
        met = ("yes" if abs(d) <= TARGETS[config] or d > 0 else "**no**") if target else ""
    print(f"| {config} | {','.join(sorted(algo[config]))} | " + " | ".join(cells) +
          f" | {mean:.2f} | {delta} | {target} | {met} |")
# gradwire's PowerSGD against PyTorch's own at the same rank (issue: within 0.3 points).
ours, theirs = acc.get("powersgd-r4", {}), acc.get("torch-powersgd-r4", {})
common = [s for s in ours if s in theirs]
if common:
    d = sum(ours[s] - theirs[s] for s in common) / len(common)
    print(f"\npowersgd-r4 against torch-powersgd-r4 (mean of per-seed differences, seeds "
          f"{','.join(map(str, common))}): {d:+.2f} points (target: within 0.3: "
          f"{'met' if d >= -0.3 else 'not met'})")
