"""Shared fixtures: every test starts from fixed torch and NumPy seeds, on the CPU."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def device() -> torch.device:
    return torch.device("cpu")
