"""Jobs of their own (each test starts `mpirun -np 3`): a rank that raises or dies, and
mpi4py initializing MPI before gradwire. Run by plain pytest, not under mpirun."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 8  # GRADWIRE_TIMEOUT of the jobs


def run_job(mode, extra_mpirun=(), extra_args=()):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_COMM_WORLD", "OMPI_MCA_orte", "PMIX_", "OMPI_FILE"))}
    env.update(GRADWIRE_TIMEOUT=str(TIMEOUT_S), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    start = time.monotonic()
    p = subprocess.run(["mpirun", "--oversubscribe", *extra_mpirun, "-np", "3", sys.executable,
                        os.path.join(HERE, "train_until.py"), mode, *extra_args],
                       env=env, capture_output=True, text=True, timeout=300)
    # mpirun forwards the ranks' output in pieces: two ranks' lines can meet on one line.
    lines = {int(m.group(1)): m.group(2)
             for m in re.finditer(r"rank (\d+): (.*?)(?=rank \d+: |\n|$)", p.stdout)}
    return p, lines, time.monotonic() - start


def test_a_rank_that_raises_fails_every_rank_within_the_deadline():
    p, lines, elapsed = run_job("raise")
    assert p.returncode != 0
    assert "ValueError: injected failure on rank 1" in lines.get(1, ""), p.stdout + p.stderr
    for r in (0, 2):  # the survivors: gradwire's timeout, naming the rank that is missing
        line = lines.get(r, "")
        assert "gradwire.TimeoutError" in line, p.stdout + p.stderr
        assert "GRADWIRE_TIMEOUT" in line and "rank(s) 1 have not reached" in line, line
        # Three steps, then one deadline (the poll) and its bounded wait: not a hang.
        after = float(line.rsplit("(after ", 1)[1].split(" s)")[0])
        assert after < 3 * TIMEOUT_S + 30, line


def test_a_rank_that_dies_ends_the_job():
    # Open MPI 4.1 ends the whole job when a rank exits without MPI_Finalize; the survivors
    # stop rather than hang (builds with ULFM could shrink instead: docs/fault-tolerance.md).
    p, lines, elapsed = run_job("die")
    assert p.returncode != 0
    assert 1 not in lines
    assert elapsed < 240, elapsed  # start-up of three Pythons on a loaded machine included


def test_mpi4py_first_with_a_labelled_timeline(tmp_path):
    # One job for both (each costs three Python start-ups): mpi4py initializes MPI, and
    # gradwire.torch.init(timeline=...) records the hook's plan runs under the bucket's names.
    pytest.importorskip("mpi4py")
    trace = tmp_path / "trace.json"
    p, lines, _ = run_job("mpi4py", extra_args=(str(trace),))
    assert p.returncode == 0, p.stdout + p.stderr
    assert all("finished" in lines.get(r, "") for r in range(3)), p.stdout + p.stderr
    events = json.loads(trace.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    assert {e["pid"] for e in events} == {0, 1, 2}
    # The q8 bucket (0.weight; 2.weight and the biases are below min_compress_numel) by name.
    text = json.dumps(events)
    assert "bucket 0: " in text and "0.weight" in text, text[:2000]
