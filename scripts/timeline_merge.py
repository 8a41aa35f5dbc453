#!/usr/bin/env python3
"""Joins a timeline's per-rank parts into one Chrome trace (docs/timeline.md).

Ranks write "<path>.rank<r>.json" when rank 0 could not gather them (a rank died, rank 0 was
gone, the job aborted on a timeout, or MPI was finalized with the communicator still alive).

Usage: timeline_merge.py OUT.json PART.json [PART.json ...]
       timeline_merge.py OUT.json            (takes OUT.json.rank*.json)
"""
import glob
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    parts = sys.argv[2:] or sorted(glob.glob(out + ".rank*.json"))
    if not parts:
        sys.exit(f"timeline_merge: no parts given and none match {out}.rank*.json")
    events, ranks = [], set()
    for p in parts:
        with open(p) as f:
            doc = json.load(f)
        evs = doc["traceEvents"] if isinstance(doc, dict) else doc
        events.extend(evs)
        ranks.update(e["pid"] for e in evs if "pid" in e)
    with open(out, "w") as f:
        json.dump({"traceEvents": events, "displayTimeUnit": "ms",
                   "otherData": {"ranks_present": sorted(ranks), "merged_from": parts}}, f)
    print(f"timeline_merge: {len(events)} events of ranks {sorted(ranks)} -> {out}")


if __name__ == "__main__":
    main()
