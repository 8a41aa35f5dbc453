#!/usr/bin/env python3
"""Checks a timeline written by gw_timeline_probe (docs/timeline.md).

Usage: check_timeline.py MODE PATH RANKS [MAX_BYTES]
  mixed    valid trace JSON; one process per rank; a dense allreduce, an iallreduce, an SRA
           run and a sparse run on every rank; stages, exchanges, encodes and decodes nested
           in their run; timestamps in order; labels name the plans' tracks
  stall    as mixed, and rank 1's late arrival is the others' long wait: their exchange in
           the second SRA run (and their second dense allreduce) lasts >= 300 ms, rank 1's not
  many     the file is at most MAX_BYTES and says that the earliest events were dropped
  timeout  some rank's own part (PATH.rank<r>.json) holds a timeout mark naming rank 1
  late-close  PATH has every rank but 1 and names 1 missing; PATH.rank1.json has rank 1's runs
"""
import glob
import json
import os
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def load(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path} is not valid JSON: {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        fail(f"{path}: no traceEvents array")
    return doc["traceEvents"]


def by_rank(events):
    ranks = {}
    for e in events:
        for key in ("ph", "pid", "name"):
            if key not in e:
                fail(f"event without '{key}': {e}")
        ranks.setdefault(e["pid"], []).append(e)
    return ranks


def spans(evs):
    return [e for e in evs if e["ph"] == "X"]


def check_structure(events, nranks):
    ranks = by_rank(events)
    if sorted(ranks) != list(range(nranks)):
        fail(f"processes {sorted(ranks)}, expected ranks 0..{nranks - 1}")
    for pid, evs in ranks.items():
        names = [e for e in evs if e["ph"] == "M" and e["name"] == "process_name"]
        if len(names) != 1 or names[0]["args"]["name"] != f"rank {pid}":
            fail(f"rank {pid}: process_name metadata {names}")
        labels = [e["args"]["labels"] for e in evs if e["ph"] == "M" and e["name"] == "process_labels"]
        if not labels or "clock aligned" not in labels[0] or "NOT" in labels[0]:
            fail(f"rank {pid}: clock not aligned: {labels}")
        timed = [e for e in evs if e["ph"] != "M"]
        ts = [e["ts"] for e in timed]
        if ts != sorted(ts):
            fail(f"rank {pid}: timestamps out of order")
        for e in spans(timed):
            if e["dur"] < 0:
                fail(f"rank {pid}: negative duration {e}")
        runs = [e for e in spans(timed) if e["name"].startswith("run ")]
        eps = 0.002  # us: timestamps are printed to the nanosecond
        for e in spans(timed):
            if e["name"].startswith("stage") or e["name"] in ("exchange", "encode", "decode"):
                if e["tid"] == 0 and e["name"] == "exchange":
                    continue
                inside = [r for r in runs if r["tid"] == e["tid"] and r["ts"] - eps <= e["ts"]
                          and e["ts"] + e["dur"] <= r["ts"] + r["dur"] + eps]
                if not inside:
                    fail(f"rank {pid}: {e['name']} at {e['ts']} is not inside a run on its track")
        async_b = sum(1 for e in timed if e["ph"] == "b")
        async_e = sum(1 for e in timed if e["ph"] == "e")
        if async_b != async_e:
            fail(f"rank {pid}: {async_b} async begins, {async_e} ends")
    return ranks


def check_mixed(events, nranks):
    ranks = check_structure(events, nranks)
    for pid, evs in ranks.items():
        names = [e["name"] for e in spans(evs)]
        if not any(e["ph"] == "b" and e["name"] == "iallreduce" for e in evs):
            fail(f"rank {pid}: no iallreduce request (an async event)")
        for want in ("allreduce", "run allreduce sra q8",
                     "run allreduce sparse-allgather topk", "encode", "decode", "exchange",
                     "stage 0"):
            if not any(n.startswith(want) for n in names):
                fail(f"rank {pid}: no '{want}' span (have {sorted(set(names))})")
        threads = {e["tid"]: e["args"]["name"] for e in evs
                   if e["ph"] == "M" and e["name"] == "thread_name"}
        if not any(t.startswith("bucket 0: fc.weight .. fc.bias (plan ") for t in threads.values()):
            fail(f"rank {pid}: the label does not name the SRA plan's track: {threads}")
        if not any(e["ph"] == "b" and e["name"].startswith("send to ") for e in evs):
            fail(f"rank {pid}: no send recorded")
        sra = [e for e in spans(evs) if e["name"].startswith("run allreduce sra q8")]
        if len(sra) != 3 or any(e["args"].get("bytes", 0) <= 0 for e in sra):
            fail(f"rank {pid}: {len(sra)} SRA runs with bytes {[e['args'] for e in sra]}")
        if any(e["args"].get("detail") != "bucket 0: fc.weight .. fc.bias" for e in sra):
            fail(f"rank {pid}: SRA runs without their label: {[e['args'] for e in sra]}")
    return ranks


def check_stall(events, nranks):
    ranks = check_mixed(events, nranks)
    for pid, evs in ranks.items():
        sra = [e for e in spans(evs) if e["name"].startswith("run allreduce sra q8")]
        second = sra[1]
        waits = [e for e in spans(evs) if e["name"] == "exchange" and e["tid"] == second["tid"]
                 and second["ts"] <= e["ts"] <= second["ts"] + second["dur"]]
        longest = max((e["dur"] for e in waits), default=0) / 1e3
        dense = [e for e in spans(evs) if e["name"] == "allreduce"][1]["dur"] / 1e3
        print(f"rank {pid}: second SRA run's longest exchange {longest:.1f} ms, "
              f"second dense allreduce {dense:.1f} ms")
        if pid != 1 and (longest < 300 or dense < 300):
            fail(f"rank {pid}: the wait for the stalled rank 1 is not on its track")
        if pid == 1 and (longest > 200 or dense > 200):
            fail("rank 1 (the late one) shows a long wait of its own")


def check_many(events, path, nranks, max_bytes):
    check_structure(events, nranks)
    size = os.path.getsize(path)
    print(f"{path}: {size} bytes (limit {max_bytes})")
    if size > max_bytes:
        fail(f"{path} is {size} bytes, more than {max_bytes}")
    labels = " ".join(e["args"]["labels"] for e in events
                      if e["ph"] == "M" and e["name"] == "process_labels")
    if "earliest events dropped" not in labels:
        fail("the ring did not wrap: no dropped events reported")


def check_timeout(path):
    parts = sorted(glob.glob(path + ".rank*.json"))
    if not parts:
        fail(f"no part file {path}.rank<r>.json was written by an aborting rank")
    for p in parts:
        for e in load(p):
            if e["ph"] == "i" and e["name"] in ("timeout", "abort") and "rank(s) 1" in e["args"].get("detail", ""):
                print(f"{p}: {e['name']}: {e['args']['detail']}")
                return
    fail(f"no timeout mark naming rank 1 in {parts}")


def check_late_close(path, nranks):
    with open(path) as f:
        doc = json.load(f)
    present = sorted({e["pid"] for e in doc["traceEvents"]})
    if present != [r for r in range(nranks) if r != 1]:
        fail(f"{path}: ranks {present}, expected all but 1")
    if doc.get("otherData", {}).get("missing_ranks") != [1]:
        fail(f"{path}: missing_ranks {doc.get('otherData')}, expected [1]")
    part = load(path + ".rank1.json")
    runs = [e for e in part if e.get("ph") == "X" and e["name"].startswith("run allreduce sra q8")]
    if {e["pid"] for e in part} != {1} or len(runs) != 3:
        fail(f"rank 1's own part: pids {sorted({e['pid'] for e in part})}, {len(runs)} runs")
    print(f"{path}: ranks {present}, missing [1]; rank 1's part has its 3 runs")
    # The merge script joins them into a trace of every rank.
    merge = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "timeline_merge.py")
    whole = path + ".merged.json"
    subprocess.run([sys.executable, merge, whole, path, path + ".rank1.json"], check=True)
    check_structure(load(whole), nranks)


def main():
    mode, path, nranks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "timeout":
        check_timeout(path)
    elif mode == "late-close":
        check_late_close(path, nranks)
    else:
        events = load(path)
        if mode == "mixed":
            check_mixed(events, nranks)
        elif mode == "stall":
            check_stall(events, nranks)
        elif mode == "many":
            check_many(events, path, nranks, int(sys.argv[4]))
        else:
            fail("unknown mode " + mode)
    print("PASS")


if __name__ == "__main__":
    main()
