"""Tests run by every rank of `mpirun -np N python -m pytest ranked/` (scripts/test_python.sh):
each test is collective, so every rank runs the same tests in the same order."""
import pytest
import torch

import gradwire.torch as gwt


@pytest.fixture(scope="session")
def world():
    torch.set_num_threads(1)
    # gloo whatever the machine has: the tests train CPU models (and CUDA ones, via gloo).
    return gwt.init(backend="gloo")
