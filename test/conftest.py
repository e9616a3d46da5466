"""Fixtures shared by the test modules."""
import pytest
import torch


@pytest.fixture
def two_threads():
    """Run a test on 2 torch threads (this machine's cores), restoring the setting afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
