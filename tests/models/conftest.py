"""Shared by the model tests: one OpenMP thread for their small tensors."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run small tensors; on a shared 2-core machine torch's second OpenMP thread waits
    for the other processes and makes them 10-30x slower. One thread is fast on any machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
