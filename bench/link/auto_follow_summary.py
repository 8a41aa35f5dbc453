"""Summary of one bench/link/auto_follow.sh log: per phase (unshaped, shaped, unshaped again)
the runs and the median run time of each algorithm, the steps at which the link changed, and
every change of the plan's decision with its time from the shaping.

    python3 bench/link/auto_follow_summary.py FOLLOW.txt   (a gzipped log too)"""
import gzip
import statistics
import sys

PHASES = ("unshaped", "shaped", "unshaped again")


def read(path):
    """(shaped_at, unshaped_at, runs): epoch seconds of the changes (None: none), and per run
    (epoch_s, step, algorithm, run_ms, decision)."""
    opener = gzip.open if path.endswith(".gz") else open
    shaped_at = unshaped_at = None
    runs = []
    with opener(path, "rt") as f:
        for line in f:
            fields = line.split()
            if line.startswith("# 1") and " shaped:" in line:
                shaped_at = float(fields[1])
            elif line.startswith("# 1") and line.rstrip().endswith("unshaped"):
                unshaped_at = float(fields[1])
            elif line[:1].isdigit():
                runs.append((float(fields[0]), int(fields[1]), fields[2], float(fields[3]),
                             " ".join(fields[5:])))
    return shaped_at, unshaped_at, runs


def main():
    shaped_at, unshaped_at, runs = read(sys.argv[1])

    def phase(t):
        if shaped_at is None or t < shaped_at:
            return PHASES[0]
        return PHASES[1] if unshaped_at is None or t < unshaped_at else PHASES[2]

    for name in PHASES:
        in_phase = [r for r in runs if phase(r[0]) == name]
        per_algorithm = []
        for algorithm in sorted({r[2] for r in in_phase}):
            times = [r[3] for r in in_phase if r[2] == algorithm]
            per_algorithm.append(f"{algorithm} {statistics.median(times):.3f} ms "
                                 f"({len(times)} runs)")
        print(f"{name}: {len(in_phase)} runs; " + "; ".join(per_algorithm))
    first = {name: next((r[1] for r in runs if phase(r[0]) == name), None) for name in PHASES}
    print(f"shaped at step {first[PHASES[1]]}, unshaped at step {first[PHASES[2]]}")
    decision = None
    for t, step, algorithm, _, why in runs:
        if why and why != decision:
            print(f"step {step} ({t - (shaped_at or t):+.2f} s from the shaping, {phase(t)}): "
                  f"{algorithm}: {why}")
            decision = why


if __name__ == "__main__":
    main()
