"""Shared test setup: one torch thread (two threads thrash on a loaded 2-core machine)."""
import torch

torch.set_num_threads(1)
