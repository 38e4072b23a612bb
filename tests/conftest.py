import pytest
import torch

from minidpo.tokenizer import Tokenizer

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tok():
    return Tokenizer.load()


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory):
    """One tiny end-to-end pipeline run shared by the tests that need trained artifacts."""
    from minidpo.pipeline import Run, run_all
    run = Run.create(tmp_path_factory.mktemp("run"), seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    summary = run_all(run)
    return run, summary
