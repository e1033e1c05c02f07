"""Shared test setup: one torch thread (two threads thrash on a loaded 2-core machine), and one
folder of generated datasets for the session's test processes and the runs they start (each
would otherwise make mnist1d again: seconds a process)."""
import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def generated_datasets_of_the_session(request, tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base  # all workers'
    before = os.environ.get("DISTILL_CACHE")
    os.environ["DISTILL_CACHE"] = str(shared / "distill-cache")
    yield
    if before is None:
        os.environ.pop("DISTILL_CACHE", None)
    else:
        os.environ["DISTILL_CACHE"] = before
