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
    from minidpo.harness.pipeline import Run, run_all
    run = Run.create(tmp_path_factory.mktemp("run"), seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    summary = run_all(run)
    return run, summary


@pytest.fixture(scope="session")
def fast_studies(fast_run, tmp_path_factory):
    """The tiny run folder plus the Figure 2 study and its ablation with --fast, computed once;
    the tutorials' folder starts from a copy of it, so lesson 13 reuses every unit."""
    import shutil
    from minidpo.studies.ablation import run_ablation
    from minidpo.studies.frontier import run_frontier
    from minidpo.harness.runfolder import Run
    run, _ = fast_run
    out = tmp_path_factory.mktemp("studies") / "run"
    shutil.copytree(run.out, out)
    studies = Run.create(out, seed=0, fast=True, device="cpu", dtype="fp32", quiet=True)
    run_frontier(studies)
    run_ablation(studies)
    return studies
