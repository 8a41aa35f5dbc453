"""The thin binding of the C ABI: communicator, plans, errors with gradwire's code and message."""
import os

import numpy as np
import pytest

import gradwire


def test_world_matches_mpirun(world):
    assert world.size == int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    assert world.rank == int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))


def test_plan_from_python_names_what_ran(world):
    n = 4096
    x = (np.arange(n, dtype=np.float32) % 97) * 0.001 * (world.rank + 1)
    out = np.empty_like(x)
    plan = gradwire.Plan(world, n, codec="q8", algorithm="sra", op="avg")
    plan.run(x.ctypes.data, out.ctypes.data)
    want = (np.arange(n) % 97) * 0.001 * (world.size + 1) / 2
    # q8 (stochastic rounding): within one step of each rank's grid, 0.096 (r+1) / 255.
    assert np.max(np.abs(out - want)) <= 0.096 * world.size / 255 + 1e-6
    assert plan.stats()["algorithm"] == "sra"
    assert plan.step == 1
    plan.step = 5
    assert plan.step == 5
    plan.destroy()


def test_errors_carry_code_and_message(world):
    with pytest.raises(gradwire.InvalidArgumentError) as e:
        gradwire.Plan(world, 64, codec="q3")
    assert e.value.code == 1 and isinstance(e.value, gradwire.Error)
    assert "q3" in str(e.value) and "gw_plan_create" in str(e.value)
    if world.size > 1:  # ranks that disagree all learn it, naming the field
        with pytest.raises(gradwire.MismatchError, match="count"):
            gradwire.Plan(world, 64 + (world.rank == 0), codec="q8")
    with pytest.raises(ValueError):
        world.set_on_timeout("later")


def test_thread_level_is_what_the_hook_needs(world):
    level, initialized_here = gradwire.init_mpi("multiple")  # again: reports, initializes nothing
    assert level in ("serialized", "multiple")
    assert initialized_here is False
